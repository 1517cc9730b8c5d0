"""Test media made by the tests themselves: recognisable frames and videos written with PyAV;
and `FOOTAGE`, the folder of the short real recordings the tests cut clips from
(tests/fixtures/footage/README.md says where they come from).

Importable from any test (`from media import ...`: pyproject puts tests/ on the path).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from gdn.data.decode import read_frames

H, W = 32, 48
FOOTAGE = Path(__file__).parent / "fixtures" / "footage"

# Grey-level datasets: every frame's grey level encodes (video, frame), see `pixel` and `which`.
CLASSES = ["Holding something", "Pushing something from left to right",
           "Pushing something from right to left"]
TEMPLATES = ["Holding [something]", "Pushing [something] from left to right",
             "Pushing [something] from right to left"]
FRAMES_DIR = "20bn-something-something-v1"
VIDEOS_DIR = "20bn-something-something-v2"

# (suffix, encoder, pix_fmt, options): all lossless for RGB input
LOSSLESS = {
    "ffv1-mkv": (".mkv", "ffv1", "bgr0", {}),
    "x264rgb-mp4": (".mp4", "libx264rgb", "rgb24", {"qp": "0"}),
    "vp9-webm": (".webm", "libvpx-vp9", "gbrp", {"lossless": "1"}),
}


def gradient_frames(n: int, seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """`n` distinct uint8 RGB frames `(n, height, width, 3)`: a moving gradient plus noise, so
    every index is recognisable."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([(xs * 5 + t * 20) % 256 for t in range(n)])
    frames = np.stack([base, np.broadcast_to(ys * 7, base.shape), base[::-1]], axis=-1)
    return (frames + rng.integers(0, 30, frames.shape)).clip(0, 255).astype(np.uint8)


def write_video(path, frames: np.ndarray, codec: str, pix_fmt: str, options: dict | None = None,
                rate: int = 12, container_options: dict | None = None) -> None:
    """Encode RGB `frames` `(n, H, W, 3)` into `path` with PyAV (`container_options`: the
    muxer's, e.g. `{"movflags": "faststart"}`: an MP4 index before the frames)."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.options = options or {}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def read_stack(path, indices) -> np.ndarray:
    """`read_frames` stacked into one `(len(indices), H, W, 3)` array."""
    return np.stack(read_frames(path, indices))


def pixel(video: int, frame: int) -> int:
    """The grey level of frame `frame` (< 12) of video `video` (< 6): 19 levels apart, so JPEG/VP9
    loss (a level or two) cannot make one frame look like another; see `which`."""
    return 16 + 19 * (frame % 12) + 3 * video


def write_grey_frames(folder: Path, n: int, video: int = 0, size=(24, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        Image.new("RGB", size[::-1], (pixel(video, t),) * 3).save(folder / f"{t + 1:05d}.jpg", quality=100)
    return folder


def write_grey_video(path: Path, n: int, video: int = 0, codec: str = "libvpx-vp9", size=(32, 32)) -> Path:
    """A flat-grey video of `n` frames (VP9 WebM: no stored frame count; or MPEG-4)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=12)
        s.width, s.height, s.pix_fmt = size[1], size[0], "yuv420p"
        if codec == "libvpx-vp9":
            s.options = {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "0", "lag-in-frames": "0"}
        for t in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), pixel(video, t), np.uint8), format="rgb24")
            frame.pts = t
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


def make_grey_ssv1(root: Path, n_frames=(9, 6, 12, 8, 10, 7)) -> Path:
    lines = []
    for i, n in enumerate(n_frames):
        write_grey_frames(root / FRAMES_DIR / str(100 + i), n, video=i)
        lines.append(f"{100 + i};{CLASSES[i % 3]}")
    (root / "something-something-v1-labels.csv").write_text("\n".join(CLASSES) + "\n")
    for split in ("train", "validation"):
        (root / f"something-something-v1-{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def make_grey_ssv2(root: Path, n_frames=(9, 6, 12, 8)) -> Path:
    (root / VIDEOS_DIR).mkdir(parents=True)
    items = []
    for i, n in enumerate(n_frames):
        write_grey_video(root / VIDEOS_DIR / f"{200 + i}.webm", n, video=i)
        items.append({"id": str(200 + i), "template": TEMPLATES[i % 3], "label": "x", "placeholders": []})
    (root / "something-something-v2-labels.json").write_text(
        json.dumps({name: str(i) for i, name in enumerate(CLASSES)}))
    for split in ("train", "validation"):
        (root / f"something-something-v2-{split}.json").write_text(json.dumps(items))
    return root


def grey(clip: torch.Tensor) -> list[int]:
    """Per-frame grey level (channel 0, top-left pixel) of a uint8 (C, T, H, W) clip."""
    assert clip.dtype == torch.uint8
    return clip[0, :, 0, 0].long().tolist()


def which(clip: torch.Tensor, video: int) -> list[int]:
    """The frame numbers a clip of video `video` shows, read back from its grey levels."""
    return [round((v - 16 - 3 * video) / 19) for v in grey(clip)]


# The colours `colour_checkpoint` (conftest.py) tells apart: a model whose answer a test controls.
COLOURS = {"red": (200, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 210)}


def colour_frames(name: str, n: int, height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """`n` uint8 frames `(n, height, width, 3)` of the colour `name` with mild noise."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-20, 21, (n, height, width, 3))
    return np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)


def mpegts(frames: np.ndarray, rate: int = 12) -> bytes:
    """RGB `frames` `(n, H, W, 3)` as an MPEG-TS stream (MPEG-4 Part 2 video), in memory."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as c:
        s = c.add_stream("mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for rgb in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        c.mux(s.encode())
    return buf.getvalue()


class StreamServer:
    """Serves `data` at http://127.0.0.1:<port>/live.ts on the loopback interface, as a live
    HTTP source does (chunked transfer, a few packets at a time), one behaviour per connection
    from `plan` (the last one repeats): "end" (all of it, then the final chunk), "stall:S" (a
    pause of S seconds halfway), "drop" (a TCP reset halfway: a connection that died)."""

    def __init__(self, data: bytes, plan: list[str]):
        self.data, self.plan, self.connections, self.stalled = data, list(plan), 0, 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                mode = server.plan[min(server.connections, len(server.plan) - 1)]
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                data, step = server.data, 188 * 8
                for i in range(0, len(data), step):
                    if i >= len(data) // 2 > i - step:  # halfway
                        if mode == "drop":  # RST, not FIN
                            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            self.connection.close()
                            return
                        if mode.startswith("stall:"):
                            t0 = time.monotonic()
                            time.sleep(float(mode[6:]))
                            server.stalled += time.monotonic() - t0
                    chunk = data[i : i + step]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    time.sleep(0.005)
                self.wfile.write(b"0\r\n\r\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/live.ts"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
