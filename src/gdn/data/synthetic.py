"""A synthetic Something-Something: classes that only temporal models can tell apart.

Every class comes with its time reverse ("Moving something up" / "Moving something
down", ...). A clip of the second class is drawn exactly like one of the first and
then played backwards, so both classes show the same set of frames: a per-frame
model with an order-free consensus (TSN's average) is at chance within each pair,
while a model that sees frame order separates them easily. This mirrors the point
of the dataset (and of the paper's temporal group): TSN reaches about 20% on SSv1.

Horizontal flips: the mirror image of every class is either the class itself
(up/down, closer/away, covering) or the class whose name swaps "left" and
"right" (moving left to right, turning to the right = clockwise on screen), and
every random choice (positions, shapes, textures, backgrounds) is drawn from a
mirror-symmetric distribution, so label-aware flipping stays correct.

`generate` writes real encoded files in the official layouts (see
shared/reference/something-something.md): VP9 WebM + JSON for SSv2, JPEG frame
folders + CSV for SSv1. Output is a pure function of the arguments and `seed`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm import tqdm

from gdn.data.annotations import SSV1_FRAMES, SSV1_LABELS, SSV1_SPLIT, SSV2_LABELS, SSV2_SPLIT, SSV2_VIDEOS
from gdn.data.transforms import mirror_class_name

log = logging.getLogger(__name__)

__all__ = [
    "PAIRS",
    "ALL_CLASSES",
    "Clip",
    "SynthSummary",
    "class_name",
    "reverse_pairs",
    "sample_clip",
    "render_clip",
    "generate",
]

# (template played forward, its time reverse, kind of motion). Templates keep the
# SSv2 `[something]` brackets; the class name is the template without them.
PAIRS: list[tuple[str, str, str]] = [
    ("Moving [something] from left to right", "Moving [something] from right to left", "move_x"),
    ("Moving [something] up", "Moving [something] down", "move_y"),
    ("Moving [something] closer", "Moving [something] away", "scale"),
    # Clockwise on screen; its mirror image turns anticlockwise.
    ("Turning [something] to the right", "Turning [something] to the left", "rotate"),
    ("Covering [something]", "Uncovering [something]", "cover"),
]
DEFAULT_PAIRS = 4


def class_name(template: str) -> str:
    """The SSv2 class of a template: the template with `[` and `]` removed."""
    return template.replace("[", "").replace("]", "")


ALL_CLASSES: list[str] = [class_name(t) for pair in PAIRS for t in pair[:2]]
_TEMPLATE = {class_name(t): t for pair in PAIRS for t in pair[:2]}
_PAIR_OF = {class_name(t): (i, j) for i, pair in enumerate(PAIRS) for j, t in enumerate(pair[:2])}


def reverse_pairs(classes: list[str]) -> dict[int, int]:
    """Class index -> index of its time reverse, for the classes of `classes` whose pair
    (`PAIRS`) is complete."""
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for forward, backward, _ in PAIRS:
        a, b = index.get(class_name(forward)), index.get(class_name(backward))
        if a is not None and b is not None:
            out[a], out[b] = b, a
    return out


# ----------------------------------------------------------------------------- one clip

SHAPES = ("square", "disc", "triangle", "diamond", "semicircle")
TEXTURES = ("plain", "striped", "checkered")
BACKGROUNDS = ("solid", "gradient", "noise")
COLOURS = {
    "red": (220, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (235, 220, 40),
    "green": (40, 180, 60),
    "cyan": (40, 200, 220),
    "blue": (40, 70, 220),
    "purple": (140, 50, 200),
    "pink": (240, 120, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}


@dataclass
class Clip:
    """One synthetic clip: appearance and the object's state in every frame.

    Coordinates are in pixels with the origin at the top-left corner of the top-left
    pixel, y pointing down; `angle` is in radians, increasing clockwise on screen.
    `cover` is how far the cover has travelled from outside the frame onto the
    object (0 = away, 1 = covering it). The reverse class holds the same arrays
    reversed in time.
    """

    class_name: str
    height: int
    width: int
    center: np.ndarray  # (T, 2) x, y
    radius: np.ndarray  # (T,)
    angle: np.ndarray  # (T,)
    cover: np.ndarray  # (T,) in [0, 1]
    shape: str
    texture: str
    colour: str
    rgb: tuple[int, int, int]
    rgb2: tuple[int, int, int]  # stripes/checks, the orientation mark and the cover
    stripe_angle: float
    cover_from: str  # "left", "right", "top" or "bottom"
    background: str
    background_seed: int
    placeholder: str = field(default="")

    @property
    def num_frames(self) -> int:
        return len(self.radius)


def _progress(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) motion progress 0 -> 1 with random pauses before and after and random easing.

    The two pauses are i.i.d. and both easings are symmetric (e(1-s) = 1-e(s)), so
    the time reverse of a progress curve is distributed like 1 - progress.
    """
    pause_before, pause_after = rng.integers(0, max(1, n // 5) + 1, size=2)
    t = np.arange(n, dtype=np.float64)
    span = max(1, n - 1 - pause_before - pause_after)
    s = np.clip((t - pause_before) / span, 0.0, 1.0)
    if rng.random() < 0.5:
        s = s * s * (3 - 2 * s)  # smoothstep: accelerate, then slow down
    return s


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> tuple[str, tuple]:
    names = list(COLOURS)
    for _ in range(50):
        name = names[rng.integers(len(names))]
        if np.abs(np.array(COLOURS[name]) - against).sum() > 200:
            break
    jitter = rng.integers(-15, 16, size=3)
    return name, tuple(int(c) for c in np.clip(np.array(COLOURS[name]) + jitter, 0, 255))


def _background_mean(kind: str, seed: int) -> np.ndarray:
    return _background(kind, seed, 8, 8).reshape(-1, 3).mean(0)


def _background(kind: str, seed: int, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 background; every kind is drawn from a mirror-symmetric distribution."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 226, size=3).astype(np.float32)
    if kind == "solid":
        image = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    elif kind == "gradient":
        other = rng.integers(30, 226, size=3).astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        d = (xs / width - 0.5) * np.cos(theta) + (ys / height - 0.5) * np.sin(theta)
        w = np.clip(d + 0.5, 0, 1)[..., None]
        image = base * (1 - w) + other * w
    elif kind == "noise":
        # low-frequency blobs plus fine grain
        coarse = rng.normal(0, 35, size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
        image = np.array(
            Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize(
                (width, height), Image.BILINEAR
            ),
            dtype=np.float32,
        )
        image = image - image.mean((0, 1)) + base + rng.normal(0, 8, size=(height, width, 3))
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.clip(image, 0, 255).astype(np.uint8)


def sample_clip(
    name: str, num_frames: int, height: int, width: int, rng: np.random.Generator
) -> Clip:
    """Draw one clip of class `name`.

    The clip is drawn for the forward member of the pair and reversed in time for
    the other, so for the same `rng` state the two classes give the same frames in
    opposite order.
    """
    if name not in _PAIR_OF:
        raise ValueError(f"unknown synthetic class {name!r}; known: {ALL_CLASSES}")
    pair_index, member = _PAIR_OF[name]
    kind = PAIRS[pair_index][2]
    n, side = num_frames, min(height, width)

    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    background_seed = int(rng.integers(2**31))
    colour, rgb = _contrasting_colour(rng, _background_mean(background, background_seed))
    _, rgb2 = _contrasting_colour(rng, np.array(rgb))
    shape = SHAPES[rng.integers(len(SHAPES))]
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    stripe_angle = float(rng.uniform(0, np.pi))
    cover_from = ("left", "right", "top", "bottom")[rng.integers(4)]

    s = _progress(rng, n)
    radius = np.full(n, rng.uniform(0.15, 0.21) * side)
    angle = np.full(n, rng.uniform(0, 2 * np.pi))
    cover = np.zeros(n)
    r = radius[0]

    def between(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2

    if kind in ("move_x", "move_y"):
        # forward: left -> right (move_x) or bottom -> top (move_y); travel >= 60% of the free range
        along, across = (width, height) if kind == "move_x" else (height, width)
        a = between(r, r + 0.2 * (along - 2 * r))
        b = between(along - r - 0.2 * (along - 2 * r), along - r)
        if kind == "move_y":
            a, b = along - a, along - b
        c0 = between(r, across - r)
        c1 = float(np.clip(c0 + rng.uniform(-0.15, 0.15) * across, r, across - r))
        main, other = a + (b - a) * s, c0 + (c1 - c0) * s
        center = np.stack([main, other] if kind == "move_x" else [other, main], axis=1)
    elif kind == "scale":
        # forward: closer, the object grows by 2.2-3x
        small = rng.uniform(0.08, 0.1) * side
        large = small * rng.uniform(2.2, 3.0)
        radius = small + (large - small) * s
        cx, cy = between(large, width - large), between(large, height - large)
        center = np.tile([cx, cy], (n, 1))
    elif kind == "rotate":
        # forward: clockwise by 100-220 degrees (well under 180 between sampled frames)
        radius = np.full(n, rng.uniform(0.22, 0.28) * side)
        r = radius[0]
        angle = angle + np.deg2rad(rng.uniform(100, 220)) * s
        center = np.tile([between(r, width - r), between(r, height - r)], (n, 1))
    elif kind == "cover":
        cover = s
        center = np.tile([between(r, width - r), between(r, height - r)], (n, 1))
    else:  # pragma: no cover - PAIRS and this function must agree
        raise AssertionError(kind)

    if member == 1:
        center, radius, angle, cover = (a[::-1].copy() for a in (center, radius, angle, cover))
    adjective = {"plain": "", "striped": "striped ", "checkered": "checkered "}[texture]
    return Clip(
        class_name=name,
        height=height,
        width=width,
        center=center.astype(np.float64),
        radius=np.asarray(radius, dtype=np.float64),
        angle=np.asarray(angle, dtype=np.float64),
        cover=np.asarray(cover, dtype=np.float64),
        shape=shape,
        texture=texture,
        colour=colour,
        rgb=rgb,
        rgb2=rgb2,
        stripe_angle=stripe_angle,
        cover_from=cover_from,
        background=background,
        background_seed=background_seed,
        placeholder=f"a {colour} {adjective}{shape}",
    )


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in object units (radius 1); every shape is symmetric about the u axis
    (so mirror images stay in the family) and none about the v axis (so turning shows)."""
    if shape == "square":
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "triangle":  # apex at u = 1, base at u = -0.7
        return (u >= -0.7) & (np.abs(v) <= 0.95 * (1.0 - u) / 1.7)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "semicircle":
        return (u * u + v * v <= 1.0) & (u >= -0.3)
    raise ValueError(f"unknown shape {shape!r}")


def render_clip(clip: Clip) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of `clip`."""
    h, w = clip.height, clip.width
    background = _background(clip.background, clip.background_seed, h, w)
    rgb, rgb2 = np.array(clip.rgb, np.uint8), np.array(clip.rgb2, np.uint8)
    frames = np.empty((clip.num_frames, h, w, 3), np.uint8)
    for t in range(clip.num_frames):
        (cx, cy), r, a = clip.center[t], clip.radius[t], clip.angle[t]
        frame = frames[t]
        frame[:] = background
        # draw inside the object's bounding box only (every shape fits in radius 1)
        x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
        y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5  # pixel centres
        dx, dy = (xs - cx) / r, (ys - cy) / r
        u = dx * np.cos(a) + dy * np.sin(a)  # object axes: u points to the mark
        v = -dx * np.sin(a) + dy * np.cos(a)
        box = frame[y0:y1, x0:x1]
        inside = _shape_mask(clip.shape, u, v)
        if clip.texture == "plain":
            second = np.zeros_like(inside)
        else:
            p = u * np.cos(clip.stripe_angle) + v * np.sin(clip.stripe_angle)
            second = np.floor(p / 0.4) % 2 == 1
            if clip.texture == "checkered":
                q = -u * np.sin(clip.stripe_angle) + v * np.cos(clip.stripe_angle)
                second ^= np.floor(q / 0.4) % 2 == 1
        box[inside & ~second] = rgb
        box[inside & second] = rgb2
        # orientation mark: the object's "front", so turning is visible on any shape
        box[(u - 0.5) ** 2 + v**2 <= 0.18**2] = 255 - rgb
        if clip.cover[t] > 0:
            _draw_cover(frame, clip, t, rgb2 // 2 + 64)
    return frames


def _draw_cover(frame: np.ndarray, clip: Clip, t: int, colour: np.ndarray) -> None:
    """A square card, 2.6 object radii wide, sliding from outside the frame onto the object."""
    (cx, cy), r = clip.center[t], clip.radius[t]
    half = 1.3 * r
    start = {
        "left": (-half, cy),
        "right": (clip.width + half, cy),
        "top": (cx, -half),
        "bottom": (cx, clip.height + half),
    }[clip.cover_from]
    k = clip.cover[t]
    px, py = start[0] + (cx - start[0]) * k, start[1] + (cy - start[1]) * k
    # pixels whose centre lies within `half` of (px, py) in both axes
    x0, x1 = max(0, int(np.ceil(px - half - 0.5))), min(clip.width, int(np.floor(px + half - 0.5)) + 1)
    y0, y1 = max(0, int(np.ceil(py - half - 0.5))), min(clip.height, int(np.floor(py + half - 0.5)) + 1)
    frame[y0:y1, x0:x1] = colour


# ----------------------------------------------------------------------------- writing files


def _write_webm(path: Path, frames: np.ndarray, fps: int) -> None:
    # bitexact: no encoder version or random ids in the file, so reruns give equal bytes
    with av.open(str(path), "w", format="webm", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # realtime speed settings: ~20 ms per small clip; crf 20 keeps edges crisp
        stream.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "crf": "20",
            "b": "0",
            "threads": "1",
            "row-mt": "0",
            "lag-in-frames": "0",
        }
        for t, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_jpegs(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"{t + 1:05d}.jpg", quality=90)


@dataclass(frozen=True)
class _Job:
    clip: Clip
    path: Path
    format: str
    fps: int


def _write_clip(job: _Job) -> None:
    frames = render_clip(job.clip)
    if job.format == "ssv2":
        _write_webm(job.path, frames, job.fps)
    else:
        _write_jpegs(job.path, frames)


# ----------------------------------------------------------------------------- the dataset

SPLITS = ("train", "validation", "test")
VIDEO_DIR = {"ssv2": SSV2_VIDEOS, "ssv1": SSV1_FRAMES}


@dataclass
class SynthClipInfo:
    id: str
    split: str
    class_name: str
    template: str
    placeholder: str
    num_frames: int
    path: Path


@dataclass
class SynthSummary:
    """What `generate` wrote: class names in label-index order, clip counts per split."""

    root: Path
    format: str
    classes: list[str]
    counts: dict[str, int]
    clips: list[SynthClipInfo]


def _resolve_classes(classes: int | Sequence[str]) -> list[str]:
    if isinstance(classes, int):
        if not 1 <= classes <= len(PAIRS):
            raise ValueError(f"classes: number of pairs must be 1..{len(PAIRS)}, got {classes}")
        return ALL_CLASSES[: 2 * classes]
    names = list(dict.fromkeys(classes))
    unknown = [c for c in names if c not in _TEMPLATE]
    if unknown:
        raise ValueError(f"unknown synthetic classes {unknown}; choose from {ALL_CLASSES}")
    unmirrored = [c for c in names if mirror_class_name(c) not in names]
    if unmirrored:
        raise ValueError(
            f"classes {unmirrored} need their mirror classes "
            f"{[mirror_class_name(c) for c in unmirrored]} too, for label-aware horizontal flip"
        )
    return names


def generate(
    out: str | Path,
    *,
    format: str = "ssv2",
    classes: int | Sequence[str] = DEFAULT_PAIRS,
    train_per_class: int = 40,
    val_per_class: int = 10,
    test_per_class: int = 5,
    height: int = 96,
    width: int = 128,
    min_frames: int = 24,
    max_frames: int = 48,
    fps: int = 12,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> SynthSummary:
    """Write a synthetic Something-Something dataset under `out` in the official layout.

    `format` is "ssv2" (VP9 WebM + JSON) or "ssv1" (JPEG folders + CSV). `classes`
    is a number of time-reversed pairs (1-5, in the order of PAIRS) or a list of
    class names. Clip content, ids and annotations depend only on the arguments
    (not on `format` or `workers`). `workers` processes render and encode
    (default: up to 2). An existing video folder is refused unless `overwrite`,
    which deletes it first (stale frames would otherwise mix with new ones).
    """
    if format not in VIDEO_DIR:
        raise ValueError(f"format must be 'ssv2' or 'ssv1', got {format!r}")
    if height % 2 or width % 2 or height < 16 or width < 16:
        raise ValueError(f"height and width must be even and >= 16 (VP9 4:2:0), got {height}x{width}")
    if not 2 <= min_frames <= max_frames:
        raise ValueError(f"need 2 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    names = _resolve_classes(classes)
    out = Path(out)
    video_dir = out / VIDEO_DIR[format]
    if video_dir.exists() and any(video_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{video_dir} already holds a dataset; choose another OUT or pass overwrite=True "
                "(--overwrite) to replace it"
            )
        shutil.rmtree(video_dir)
    video_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    per_class = {"train": train_per_class, "validation": val_per_class, "test": test_per_class}
    plan = [(split, name) for split in SPLITS for name in names for _ in range(per_class[split])]
    # numeric ids like SS: unique, unordered with respect to class and split
    ids = rng.choice(np.arange(1, 10 * len(plan) + 100), size=len(plan), replace=False)
    order = rng.permutation(len(plan))  # interleave classes within each annotation file
    infos, jobs = [], []
    for k in order:
        split, name = plan[k]
        clip_rng = np.random.default_rng([seed, int(ids[k])])
        clip = sample_clip(
            name, int(clip_rng.integers(min_frames, max_frames + 1)), height, width, clip_rng
        )
        clip_id = str(ids[k])
        path = video_dir / (f"{clip_id}.webm" if format == "ssv2" else clip_id)
        infos.append(
            SynthClipInfo(clip_id, split, name, _TEMPLATE[name], clip.placeholder, clip.num_frames, path)
        )
        jobs.append(_Job(clip, path, format, fps))

    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    progress = tqdm(total=len(jobs), desc=f"synth {format}", unit="clip", leave=False,
                    disable=not sys.stderr.isatty())
    if workers <= 1:
        for job in jobs:
            _write_clip(job)
            progress.update()
    else:
        # fork: the jobs are already in memory, and this module needs no torch threads
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for _ in pool.map(_write_clip, jobs, chunksize=4):
                progress.update()
    progress.close()

    label_order = _write_annotations(out, format, names, infos, rng)
    counts = {split: sum(info.split == split for info in infos) for split in SPLITS}
    log.info("wrote %d %s clips of %d classes to %s", len(infos), format, len(names), out)
    return SynthSummary(out, format, label_order, counts, infos)


def _write_annotations(
    out: Path, format: str, names: list[str], infos: list[SynthClipInfo], rng: np.random.Generator
) -> list[str]:
    """Write the label and split files; returns the class names in label-index order."""
    by_split = {split: [i for i in infos if i.split == split] for split in SPLITS}
    if format == "ssv2":
        labels = sorted(names)
        _write_text(
            out / SSV2_LABELS,
            json.dumps({name: str(i) for i, name in enumerate(labels)}, indent=1),
        )
        for split in ("train", "validation"):
            entries = [
                {
                    "id": i.id,
                    "label": _lower_first(i.template.replace("[something]", i.placeholder)),
                    "template": i.template,
                    "placeholders": [i.placeholder],
                }
                for i in by_split[split]
            ]
            _write_text(out / SSV2_SPLIT.format(split=split), json.dumps(entries, indent=1))
        test = [{"id": i.id} for i in by_split["test"]]
        _write_text(out / SSV2_SPLIT.format(split="test"), json.dumps(test, indent=1))
        return labels
    # SSv1 lists its classes in no particular order (not alphabetical): keep it that way
    labels = [names[k] for k in rng.permutation(len(names))]
    if len(labels) > 1 and labels == sorted(labels):
        labels = labels[::-1]
    _write_text(out / SSV1_LABELS, "".join(f"{n}\n" for n in labels))
    for split in ("train", "validation"):
        lines = "".join(f"{i.id};{i.class_name}\n" for i in by_split[split])
        _write_text(out / SSV1_SPLIT.format(split=split), lines)
    _write_text(
        out / SSV1_SPLIT.format(split="test"), "".join(f"{i.id}\n" for i in by_split["test"])
    )
    return labels


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
