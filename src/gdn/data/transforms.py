"""Clip transforms: pure functions on ``(C, T, H, W)`` tensors plus thin wrappers.

Every spatial transform applies the SAME geometry to every frame of a clip (a crop that moved
between frames would invent motion). Frames arrive as uint8 and the pipelines return uint8:
ImageNet normalisation (:func:`normalize`, via :func:`model_input`) runs where the batch is
used, on the training device, as MMAction2's data preprocessor, timm's prefetcher and DALI do.
A float32 clip is 4x the bytes of a uint8 one: writing it cost a worker ~5.6 ms of a 16-frame
clip's ~38 ms, and it had to be copied again into the batch and across processes.

Clips stay *frames-last in memory* (``(C, T, H, W)`` shape over ``(T, H, W, C)`` storage, as
frames are decoded and interpolated): re-laying 16 uint8 frames out channel-first cost ~1.8 ms.
Batches keep that layout (PyTorch's ``channels_last_3d``); :func:`normalize` writes the usual
contiguous float32.

A clip may also arrive as the list of its decoded frames, ``(H, W, C)`` arrays not yet stacked
(:func:`gdn.data.decode.read_frames`): :func:`crop` then stacks only the kept pixels,
so a clip's full frames are never copied (~5% of a 16-frame WebM clip's training read, 240p).

Crop boxes are ``(top, left, height, width)`` tuples in pixels. The training recipe (paper 3.2,
TSN) is "resize the short side to 256, multi-scale crop, resize the crop to 224, flip"; we compute
the crop box in the coordinates of the resized frame and then cut the matching box out of the
source frame, rounded to whole source pixels, and resize it once (:func:`resized_crop`), so only
the kept pixels are interpolated: a random crop moved or scaled by under a source pixel is as
good a random crop. Evaluation views are not random: :class:`EvalTransform` resizes the whole
frame and then crops, so its pixels are those of the protocol it follows (the rounded box was
4.69 grey levels of mean difference away on a 176x100 photo, tests/data/test_protocols.py).

Evaluation follows one of three protocols (docs/protocols.md): gdn's own (PyTorch's
antialiased bilinear resize, short side rounded), the TSM repository's (Pillow's bilinear
resize, long side truncated, centre offsets rounded half to even, ``GroupFullResSample``'s three
crops) and MMAction2's (cv2's bilinear resize, which :func:`resize` with ``antialias=False``
matches within one grey level, and ``ThreeCrop``).

Label-aware flipping: flipping "Pushing something from left to right" shows "... from right to
left". :func:`flip_label_map` derives the pairs from the class names by swapping the words
"left" and "right"; classes without a mirrored partner keep their label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache, partial

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "TSN_SCALES",
    "Clip", "clip_size", "resize", "pil_resize", "resize_short_side", "short_side_size",
    "tsm_short_side_size", "mmaction_short_side_size", "crop", "resized_crop",
    "hflip", "normalize",
    "model_input", "frames_last", "stack_frames_last",
    "center_crop_box", "random_crop_box", "three_crop_boxes", "tsm_center_crop_box",
    "tsm_three_crop_boxes", "mmaction_three_crop_boxes", "multiscale_crop_boxes",
    "multiscale_crop_box", "swap_words", "mirror_class_name", "flip_label_map",
    "TrainTransform", "EvalTransform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)

Box = tuple[int, int, int, int]  # (top, left, height, width)
# A uint8 (C, T, H, W) tensor, or its T frames as (H, W, C) arrays not yet stacked.
Clip = torch.Tensor | Sequence[np.ndarray]


# ---------------------------------------------------------------------------------------------
# Pure functions on (C, T, H, W)


def _stacked(clip: Clip) -> torch.Tensor:
    """A clip as a ``(C, T, H, W)`` tensor: a tensor clip as it is, a list of frames stacked
    (frames-last storage)."""
    if isinstance(clip, torch.Tensor):
        return clip
    return torch.from_numpy(np.stack(clip)).permute(3, 0, 1, 2)  # (T, H, W, C) -> (C, T, H, W)


def resize(clip: Clip, size: tuple[int, int], *, antialias: bool = True) -> torch.Tensor:
    """Bilinear resize of every frame to ``size = (height, width)``; keeps the dtype.

    uint8 clips are interpolated as uint8 (PyTorch's vectorised uint8 path; fastest when the
    frames are channels-last in memory, as decoded ``(T, H, W, 3)`` arrays are), which matches
    float interpolation followed by rounding within one grey level, at ~8x the speed.
    ``antialias=False`` is plain bilinear interpolation even when shrinking: cv2's
    ``INTER_LINEAR`` (MMAction2's resize), which it matches within one grey level (23% of values
    differ by one, SSv1 and SSv2 frame sizes, opencv 5.0).
    """
    clip = _stacked(clip)
    c, t, h, w = clip.shape
    if (h, w) == tuple(size):
        return clip
    x = clip.permute(1, 0, 2, 3)  # (T, C, H, W): frames as the batch
    if x.dtype != torch.uint8 and not x.is_floating_point():
        x = x.float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=antialias, align_corners=False)
    return x.permute(1, 0, 2, 3)  # back to (C, T, H', W')


def pil_resize(clip: Clip, size: tuple[int, int]) -> torch.Tensor:
    """Every frame of a uint8 clip resized to ``size = (height, width)`` by Pillow's bilinear
    filter (antialiased when shrinking), as the TSM repository resizes (torchvision's ``Resize``
    on PIL images): a uint8 ``(C, T, height, width)`` tensor, frames-last in memory."""
    frames = clip.permute(1, 2, 3, 0).numpy() if isinstance(clip, torch.Tensor) else clip
    h, w = size
    out = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    return torch.from_numpy(out).permute(3, 0, 1, 2)  # (T, h, w, C) -> (C, T, h, w)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Frame size after scaling the short side to ``short_side`` (aspect kept, rounded)."""
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def tsm_short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The size torchvision's ``Resize(short_side)`` gives a PIL image, as in the TSM
    repository's ``GroupScale``: the long side is truncated, ``int(short_side * long / short)``
    (450 for SSv1's 176x100, where :func:`short_side_size` rounds to 451)."""
    if width < height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def mmaction_short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The size MMAction2's ``Resize(scale=(-1, short_side))`` gives (mmcv's ``rescale_size``):
    both sides times ``short_side / min(H, W)``, rounded half up."""
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_short_side(clip: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resize so that ``min(H, W) == short_side``, keeping the aspect ratio."""
    return resize(clip, short_side_size(clip.shape[-2], clip.shape[-1], short_side))


def clip_size(clip: Clip) -> tuple[int, int]:
    """``(H, W)`` of a clip's frames."""
    return tuple(clip.shape[-2:]) if isinstance(clip, torch.Tensor) else clip[0].shape[:2]


def crop(clip: Clip, box: Box) -> torch.Tensor:
    """The same ``(top, left, height, width)`` box of every frame: a view of a tensor clip; for
    a list of frames the box's pixels stacked into a new frames-last ``(C, T, h, w)`` tensor
    (the only copy they get before the resize reads them)."""
    top, left, h, w = box
    height, width = clip_size(clip)
    if top < 0 or left < 0 or top + h > height or left + w > width:
        raise ValueError(f"crop box {box} outside a {height}x{width} frame")
    if isinstance(clip, torch.Tensor):
        return clip[..., top : top + h, left : left + w]
    frames = np.stack([f[top : top + h, left : left + w] for f in clip])  # (T, h, w, C)
    return torch.from_numpy(frames).permute(3, 0, 1, 2)


def resized_crop(clip: Clip, box: Box, size: tuple[int, int]) -> torch.Tensor:
    """:func:`crop` then :func:`resize` to ``size``: only the kept pixels are interpolated."""
    return resize(crop(clip, box), size)


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right."""
    return clip.flip(-1)


def normalize(clip: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (or [0, 255] float) ``(..., C, T, H, W)`` -> contiguous float32
    ``(x / 255 - mean) / std`` per channel, on the clip's device."""
    shape = (-1, 1, 1, 1)  # channels are the 4th dimension from the end
    scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float64))).float()
    shift = (torch.tensor(mean, dtype=torch.float64) / torch.tensor(std, dtype=torch.float64)).float()
    out = torch.empty(clip.shape, dtype=torch.float32, device=clip.device)
    if clip.dtype in (torch.uint8, torch.float32) and len(scale) == clip.shape[-4]:
        # Per channel: one pass converts and scales (float32 products as below, the same bits;
        # checked for all 256 values) and one subtracts in place; the strided channels-last
        # read happens once, in the multiply, not in a separate converting copy.
        for c, (k, b) in enumerate(zip(scale.tolist(), shift.tolist())):
            torch.mul(clip.select(-4, c), k, out=out.select(-4, c)).sub_(b)
        return out
    out.copy_(clip)  # one pass: converts and makes (C, T, H, W) contiguous
    return out.mul_(scale.view(shape).to(out.device)).sub_(shift.view(shape).to(out.device))


def model_input(clip: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A batch from the data pipeline as the models take it: moved to ``device`` and, when
    uint8 pixels, normalised there (:func:`normalize`). Float clips are taken as already
    normalised and only moved."""
    clip = clip.to(device, non_blocking=True)
    return normalize(clip) if clip.dtype == torch.uint8 else clip


def frames_last(clip: torch.Tensor) -> torch.Tensor:
    """``clip`` (``(..., C, T, H, W)``) with its storage laid out ``(..., T, H, W, C)``; no copy
    when it already is."""
    return clip.movedim(-4, -1).contiguous().movedim(-1, -4)


def stack_frames_last(clips: Sequence[torch.Tensor], stack: Callable = torch.stack) -> torch.Tensor:
    """``stack(clips)`` along a new first dimension, keeping frames-last storage: a plain copy of
    each frames-last clip instead of a transposing one. ``stack`` may be ``torch.cat`` or
    ``torch.utils.data.default_collate`` (which stacks into shared memory in a worker)."""
    return stack([c.movedim(-4, -1) for c in clips]).movedim(-1, -4)


# ---------------------------------------------------------------------------------------------
# Crop boxes


def _check_fits(height: int, width: int, h: int, w: int) -> None:
    if h > height or w > width:
        raise ValueError(f"a {h}x{w} crop does not fit a {height}x{width} frame; "
                         "resize the short side to at least the crop size first")


def center_crop_box(height: int, width: int, size: int | tuple[int, int]) -> Box:
    """The centred ``size`` box; odd margins put the extra pixel after the box."""
    h, w = (size, size) if isinstance(size, int) else size
    _check_fits(height, width, h, w)
    return (height - h) // 2, (width - w) // 2, h, w


def random_crop_box(height: int, width: int, size: int | tuple[int, int],
                    rng: np.random.Generator) -> Box:
    """A uniformly random ``size`` box."""
    h, w = (size, size) if isinstance(size, int) else size
    _check_fits(height, width, h, w)
    return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w


def three_crop_boxes(height: int, width: int, size: int) -> list[Box]:
    """Three ``size`` squares along the long side: start, centre, end (test-time 3 crops, as
    PySlowFast/TSM); centred on the short side."""
    _check_fits(height, width, size, size)
    if width >= height:
        top = (height - size) // 2
        return [(top, left, size, size) for left in (0, (width - size) // 2, width - size)]
    left = (width - size) // 2
    return [(top, left, size, size) for top in (0, (height - size) // 2, height - size)]


def tsm_center_crop_box(height: int, width: int, size: int) -> Box:
    """The centred ``size`` box of torchvision's (old) ``CenterCrop``, as TSM's
    ``GroupCenterCrop``: offsets ``int(round(margin / 2))``, Python's round half to even (116
    on SSv2's 455-pixel width, where :func:`center_crop_box` takes 115)."""
    _check_fits(height, width, size, size)
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0)), size, size


def tsm_three_crop_boxes(height: int, width: int, size: int) -> list[Box]:
    """TSM's ``GroupFullResSample`` without flips: left, right and centre ``size`` squares at
    ``x = 0, 4s, 2s`` with ``s = (W - size) // 4``, all at ``y = 2 * ((H - size) // 4)``.
    Always along the width: a portrait frame gets the same crop three times, as in TSM."""
    _check_fits(height, width, size, size)
    ws, hs = (width - size) // 4, (height - size) // 4
    return [(2 * hs, left, size, size) for left in (0, 4 * ws, 2 * ws)]


def mmaction_three_crop_boxes(height: int, width: int, size: int) -> list[Box]:
    """MMAction2's ``ThreeCrop``: squares of the short side (``size`` must equal it) at
    ``0, 2s, s`` along the long side, ``s = (L - size) // 2`` (so the second is one pixel short
    of the end when ``L - size`` is odd)."""
    if size != min(height, width):
        raise ValueError(f"MMAction2's three crops are squares of the short side: {size} does not fit "
                         f"a {height}x{width} frame; crop {min(height, width)}")
    if size == height:
        step = (width - size) // 2
        return [(0, left, size, size) for left in (0, 2 * step, step)]
    step = (height - size) // 2
    return [(top, 0, size, size) for top in (0, 2 * step, step)]


def multiscale_crop_boxes(height: int, width: int, size: int,
                          scales: Sequence[float] = TSN_SCALES, max_distort: int = 1
                          ) -> tuple[list[tuple[int, int]], Callable[[int, int], list[tuple[int, int]]]]:
    """The candidates of TSN's multi-scale crop: ``(crop_h, crop_w)`` pairs and a function that
    lists the 13 fixed offsets of a pair.

    Crop sides are ``int(min(H, W) * scale)`` (snapped to ``size`` when within 3 px); a pair's
    two scale indices differ by at most ``max_distort`` (aspect jitter).
    """
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(x - size) < 3 else x for x in sides]
    pairs = [(sides[i], sides[j]) for i in range(len(sides)) for j in range(len(sides))
             if abs(i - j) <= max_distort]  # (crop_h, crop_w)

    def offsets(crop_h: int, crop_w: int) -> list[tuple[int, int]]:
        hs, ws = (height - crop_h) // 4, (width - crop_w) // 4
        grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners and centre
                (2, 0), (2, 4), (4, 2), (0, 2),  # edge midpoints
                (1, 1), (1, 3), (3, 1), (3, 3)]  # quarter points
        return [(r * hs, c * ws) for r, c in grid]  # (top, left)

    return pairs, offsets


def multiscale_crop_box(height: int, width: int, size: int, rng: np.random.Generator,
                        scales: Sequence[float] = TSN_SCALES, max_distort: int = 1,
                        fixed_offsets: bool = True) -> Box:
    """TSN multi-scale crop: a random ``(crop_h, crop_w)`` pair from
    :func:`multiscale_crop_boxes`, placed at one of the 13 fixed offsets (or anywhere when
    ``fixed_offsets=False``). The box is later resized to ``size x size``."""
    pairs, offsets = multiscale_crop_boxes(height, width, size, scales, max_distort)
    crop_h, crop_w = pairs[int(rng.integers(len(pairs)))]
    if fixed_offsets:
        cands = offsets(crop_h, crop_w)
        top, left = cands[int(rng.integers(len(cands)))]
    else:
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w


def _to_source(box: Box, scale_h: float, scale_w: float, height: int, width: int) -> Box:
    """Map a box from resized-frame coordinates back to a ``height x width`` source frame."""
    top, left, h, w = box
    t, l = int(round(top * scale_h)), int(round(left * scale_w))
    hh = max(1, min(height - t, int(round(h * scale_h))))
    ww = max(1, min(width - l, int(round(w * scale_w))))
    return t, l, hh, ww


# ---------------------------------------------------------------------------------------------
# Label-aware flip

@lru_cache(maxsize=8)
def _word_swapper(pairs: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, dict[str, str]]:
    partner: dict[str, str] = {}
    for a, b in pairs:  # the first pair that names a word decides its partner
        partner.setdefault(a.lower(), b.lower())
        partner.setdefault(b.lower(), a.lower())
    words = sorted(partner, key=len, reverse=True)  # "closer to" before "closer"
    return re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE), partner


def swap_words(name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """`name` with every whole word or phrase of `pairs` replaced by its partner, all at once,
    case kept ("Left" -> "Right", "UP" -> "DOWN")."""
    pattern, partner = _word_swapper(tuple(map(tuple, pairs)))

    def swap(m: re.Match) -> str:
        word, other = m.group(0), partner[m.group(0).lower()]
        if word.isupper():
            return other.upper()
        return other[0].upper() + other[1:] if word[0].isupper() else other
    return pattern.sub(swap, name)


def mirror_class_name(name: str) -> str:
    """Swap the words "left" and "right" (whole words, case kept: "Left" -> "Right")."""
    return swap_words(name, (("left", "right"),))


def flip_label_map(classes: Sequence[str]) -> list[int]:
    """``map[label]`` is the label of the horizontally flipped clip: the class whose name is
    :func:`mirror_class_name` of this one, or the label itself when no such class exists."""
    index = {name: i for i, name in enumerate(classes)}
    return [index.get(mirror_class_name(name), i) for i, name in enumerate(classes)]


# ---------------------------------------------------------------------------------------------
# The two pipelines the datasets use


class TrainTransform(torch.nn.Module):
    """Training augmentation (paper 3.2): short side -> ``short_side``, TSN multi-scale crop,
    resize to ``size``, horizontal flip with probability 1/2. Normalisation is left to
    :func:`model_input`.

    ``flip``: ``"label"`` swaps the label through ``flip_map`` when flipping, ``"naive"`` keeps
    it, ``"none"`` never flips. ``augment``: a further ``(clip, rng) -> clip`` on the uint8 crop,
    e.g. :class:`gdn.data.augment.RandAugment`.
    """

    def __init__(self, size: int = 224, short_side: int | None = None, *, flip: str = "label",
                 flip_map: Sequence[int] | None = None, scales: Sequence[float] = TSN_SCALES,
                 max_distort: int = 1, augment: Callable | None = None) -> None:
        super().__init__()
        if flip not in ("label", "naive", "none"):
            raise ValueError(f"unknown flip {flip!r}: use 'label', 'naive' or 'none'")
        if flip == "label" and flip_map is None:
            raise ValueError("flip='label' needs flip_map (see flip_label_map)")
        self.size = size
        self.short_side = short_side or round(size * 256 / 224)
        self.flip, self.flip_map = flip, list(flip_map) if flip_map is not None else None
        self.scales, self.max_distort = tuple(scales), max_distort
        self.augment = augment

    def forward(self, clip: Clip, label: int, rng: np.random.Generator
                ) -> tuple[torch.Tensor, int]:
        """uint8 ``(C, T, H, W)`` (or its frames) -> (uint8 frames-last ``(C, T, size, size)``,
        label after flipping)."""
        height, width = clip_size(clip)
        rh, rw = short_side_size(height, width, self.short_side)
        box = multiscale_crop_box(rh, rw, self.size, rng, self.scales, self.max_distort)
        box = _to_source(box, height / rh, width / rw, height, width)
        out = resized_crop(clip, box, (self.size, self.size))
        if self.flip != "none" and rng.random() < 0.5:
            out = hflip(out)
            if self.flip == "label" and label >= 0:
                label = self.flip_map[label]
        if self.augment is not None:
            out = self.augment(out, rng)
        return frames_last(out), label


# protocol -> (resized frame size, resize, centre crop box, three crop boxes)
_EVAL_GEOMETRY: dict[str, tuple[Callable, Callable, Callable, Callable]] = {
    "gdn": (short_side_size, resize, center_crop_box, three_crop_boxes),
    "tsm": (tsm_short_side_size, pil_resize, tsm_center_crop_box, tsm_three_crop_boxes),
    "mmaction": (mmaction_short_side_size, partial(resize, antialias=False), center_crop_box,
                 mmaction_three_crop_boxes),
}


class EvalTransform(torch.nn.Module):
    """Evaluation views: the whole frame resized to short side ``short_side``, then one centre
    crop or three crops (``crops=3``) of side ``size``, or of ``short_side`` with ``full_res``
    (TSM's ``--full_res``; MMAction2's ``ThreeCrop`` always crops the short side), each the
    way ``protocol`` ("gdn", "tsm" or "mmaction") computes it (docs/protocols.md). Returns uint8
    frames-last ``(crops, C, T, crop, crop)``; normalisation is left to :func:`model_input`.

    ``short_side`` defaults to ``size * 256 / 224``: truncated under "tsm" (its ``scale_size``),
    rounded otherwise."""

    def __init__(self, size: int = 224, short_side: int | None = None, *, crops: int = 1,
                 protocol: str = "gdn", full_res: bool = False) -> None:
        super().__init__()
        if crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {crops}")
        if protocol not in _EVAL_GEOMETRY:
            raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(_EVAL_GEOMETRY)}")
        self.size, self.crops, self.protocol = size, crops, protocol
        self.short_side = short_side or (size * 256 // 224 if protocol == "tsm" else round(size * 256 / 224))
        full_res = full_res or (protocol == "mmaction" and crops == 3)
        self.crop_size = self.short_side if full_res else size

    def forward(self, clip: Clip) -> torch.Tensor:
        """uint8 ``(C, T, H, W)`` (or its frames) -> uint8 frames-last
        ``(crops, C, T, crop, crop)``."""
        sized, resize_frames, centre_box, three_boxes = _EVAL_GEOMETRY[self.protocol]
        height, width = clip_size(clip)
        rh, rw = sized(height, width, self.short_side)
        frames = resize_frames(clip, (rh, rw))
        boxes = ([centre_box(rh, rw, self.crop_size)] if self.crops == 1
                 else three_boxes(rh, rw, self.crop_size))
        return stack_frames_last([crop(frames, b) for b in boxes])  # (crops, C, T, crop, crop)
