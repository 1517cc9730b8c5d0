"""Test media made by the tests themselves: recognisable frames and videos written with PyAV;
and `FOOTAGE`, the folder of the short real recordings the tests cut clips from
(tests/fixtures/footage/README.md says where they come from).

Importable from any test (`from media import ...`: pyproject puts tests/ on the path).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from gdn.data.decode import read_frames

H, W = 32, 48
FOOTAGE = Path(__file__).parent / "fixtures" / "footage"

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
