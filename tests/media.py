"""Test media made by the tests themselves: recognisable frames and videos written with PyAV.

Importable from any test (`from media import ...`: pyproject puts tests/ on the path).
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np

from gdn.data.decode import read_frames

H, W = 32, 48

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
                rate: int = 12) -> None:
    """Encode RGB `frames` `(n, H, W, 3)` into `path` with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.options = options or {}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def read_stack(path, indices) -> np.ndarray:
    """`read_frames` stacked into one `(len(indices), H, W, 3)` array."""
    return np.stack(read_frames(path, indices))


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
