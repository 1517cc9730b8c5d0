"""Stronger augmentation for clips: RandAugment, Mixup and CutMix, each video-consistent.

Every random parameter is drawn once per clip and applied to all its frames: a brightness, a
rotation or a cut-out box that changed from frame to frame would be motion the video does not
have, and a temporal model would learn it. So a clip of identical frames stays a clip of
identical frames (tests/data/test_augment.py checks every operation).

- :class:`RandAugment` (Cubuk et al., 2020) runs in the data workers on the uint8
  ``(C, T, H, W)`` training crop (``data.randaugment`` ops at ``data.randaugment_magnitude``,
  0-10). Statistics an operation needs (AutoContrast's range, Equalize's histogram, Contrast's
  mean) are taken over the whole clip, not per frame. MMAction2 reports +2.0 to +2.4 top-1 for
  TSM-R50 on Something-Something V1 from label-aware flip plus RandAugment (imgaug's default
  list); SlowFast and VideoMAE train with n=4 ops at magnitude 7 (timm's "rand-m7-n4"), the
  magnitude this project defaults to. Our own measurements are in docs/results.md.
- :func:`mix_batch` (Mixup, Zhang et al., 2018; CutMix, Yun et al., 2019) runs in the training
  loop on the normalised batch: each clip is mixed with the clip at the mirrored position of the
  batch, with one ``lam ~ Beta(alpha, alpha)`` per batch and, for CutMix, one box for every
  frame. The targets become soft (``lam`` of one class, ``1 - lam`` of the other). The loop
  seeds it from ``(seed, epoch, step, rank)``, so a resumed run mixes exactly as an
  uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["RANDAUGMENT_OPS", "RandAugment", "mix_batch"]


# ---------------------------------------------------------------------------------------------
# RandAugment operations: uint8 (C, T, H, W) in, uint8 out; `level` is the magnitude in [0, 1]
# and `sign` +1 or -1 (drawn per clip) for the operations that go either way.


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _blend(x: torch.Tensor, degenerate: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's ImageEnhance on a float clip: ``degenerate + factor * (x - degenerate)``, as uint8."""
    return _to_uint8(degenerate + factor * (x - degenerate))


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of a float (3, T, H, W) clip, (1, T, H, W)."""
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)


def _identity(clip, level, sign):
    return clip


def _brightness(clip, level, sign):
    return _blend(clip.float(), torch.zeros((), dtype=torch.float32), 1.0 + sign * 0.9 * level)


def _color(clip, level, sign):
    x = clip.float()
    return _blend(x, _grey(x), 1.0 + sign * 0.9 * level)


def _contrast(clip, level, sign):
    x = clip.float()
    return _blend(x, _grey(x).mean(), 1.0 + sign * 0.9 * level)  # the clip's mean grey


def _sharpness(clip, level, sign):
    # PIL's SMOOTH kernel on every frame; the border pixels keep their values, as in PIL.
    c, t, h, w = clip.shape
    if h < 3 or w < 3:
        return clip
    x = clip.float()
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    # one depthwise conv over the C*T planes (a batch of one-channel images takes a slow path)
    smooth = F.conv2d(x.reshape(1, c * t, h, w), kernel.view(1, 1, 3, 3).expand(c * t, 1, 3, 3),
                      groups=c * t).view(c, t, h - 2, w - 2)
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(x, degenerate, 1.0 + sign * 0.9 * level)


def _posterize(clip, level, sign):
    bits = 8 - int(round(4 * level))  # 8 (none) to 4 bits
    return clip & ((0xFF << (8 - bits)) & 0xFF)


def _solarize(clip, level, sign):
    threshold = 256 - int(round(256 * level))  # 256 (none) to 0 (invert everything)
    return clip if threshold > 255 else torch.where(clip >= threshold, 255 - clip, clip)


def _autocontrast(clip, level, sign):
    # Per channel, the clip's darkest value to 0 and its brightest to 255.
    x = clip.float()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    scale = torch.where(hi > lo, 255.0 / (hi - lo).clamp(min=1), torch.ones_like(hi))
    lo = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return _to_uint8((x - lo) * scale)


def _equalize(clip, level, sign):
    # PIL's ImageOps.equalize per channel, with the histogram of the whole clip.
    out = torch.empty_like(clip)
    for c in range(clip.shape[0]):
        channel = clip[c]
        hist = torch.bincount(channel.flatten().long(), minlength=256)
        nonzero = hist[hist > 0]
        step = int((nonzero.sum() - nonzero[-1]).item()) // 255
        if step == 0:
            out[c] = channel
            continue
        lut = ((torch.cumsum(hist, 0) - hist + step // 2) // step).clamp(max=255).to(torch.uint8)
        out[c] = lut[channel.long()]
    return out


def _affine(clip: torch.Tensor, matrix: Sequence[float]) -> torch.Tensor:
    """Every frame through the same 2x3 affine map of pixel coordinates about the centre
    (output pixel -> input pixel), bilinear, grey (128) outside the frame."""
    c, t, h, w = clip.shape
    a, b, tx, d, e, ty = matrix
    # Pixel offsets from the centre -> the normalised [-1, 1] coordinates affine_grid uses.
    theta = torch.tensor([[a, b * h / w, 2 * tx / w], [d * w / h, e, 2 * ty / h]], dtype=torch.float32)
    frames = clip.float().permute(1, 0, 2, 3)  # (T, C, H, W): the frames as the batch
    grid = F.affine_grid(theta.expand(t, 2, 3), [t, c, h, w], align_corners=False)
    # Sample x - 128 with zeros outside, then add 128 back: the fill is grey.
    out = F.grid_sample(frames - 128.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 128.0
    return _to_uint8(out.permute(1, 0, 2, 3))


def _rotate(clip, level, sign):
    angle = math.radians(sign * 30.0 * level)
    cos, sin = math.cos(angle), math.sin(angle)
    return _affine(clip, (cos, -sin, 0.0, sin, cos, 0.0))


def _shear_x(clip, level, sign):
    return _affine(clip, (1.0, sign * 0.3 * level, 0.0, 0.0, 1.0, 0.0))


def _shear_y(clip, level, sign):
    return _affine(clip, (1.0, 0.0, 0.0, sign * 0.3 * level, 1.0, 0.0))


def _translate_x(clip, level, sign):
    return _affine(clip, (1.0, 0.0, sign * 0.45 * level * clip.shape[-1], 0.0, 1.0, 0.0))


def _translate_y(clip, level, sign):
    return _affine(clip, (1.0, 0.0, 0.0, 0.0, 1.0, sign * 0.45 * level * clip.shape[-2]))


# The operations of RandAugment's paper (timm's "rand" set), strongest at magnitude 10: rotate 30
# degrees, shear 0.3, translate 45% of the side, enhance factors 1 +- 0.9, 4 bits, threshold 0.
RANDAUGMENT_OPS: dict[str, Callable[[torch.Tensor, float, float], torch.Tensor]] = {
    "identity": _identity, "autocontrast": _autocontrast, "equalize": _equalize, "rotate": _rotate,
    "solarize": _solarize, "color": _color, "posterize": _posterize, "contrast": _contrast,
    "brightness": _brightness, "sharpness": _sharpness, "shear_x": _shear_x, "shear_y": _shear_y,
    "translate_x": _translate_x, "translate_y": _translate_y,
}


class RandAugment:
    """``num_ops`` operations drawn uniformly (with replacement) from ``ops`` per clip, each at
    ``magnitude`` (0-10) with a random sign, the same for every frame.

    Call with a uint8 ``(C, T, H, W)`` clip and the sample's generator (the dataset's, seeded by
    ``(seed, epoch, index)``); returns a uint8 clip of the same shape.
    """

    def __init__(self, num_ops: int = 4, magnitude: int = 7, ops: Sequence[str] = tuple(RANDAUGMENT_OPS)) -> None:
        if num_ops < 0 or not 0 <= magnitude <= 10:
            raise ValueError(f"RandAugment needs num_ops >= 0 and magnitude in 0-10, got {num_ops}, {magnitude}")
        unknown = [op for op in ops if op not in RANDAUGMENT_OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment ops {unknown}; choose from {', '.join(RANDAUGMENT_OPS)}")
        self.num_ops, self.magnitude, self.ops = num_ops, magnitude, tuple(ops)

    def draw(self, rng: np.random.Generator) -> list[tuple[str, float]]:
        """The operations and signs of one clip: ``[(name, sign), ...]``."""
        names = rng.integers(len(self.ops), size=self.num_ops)
        signs = rng.choice([-1.0, 1.0], size=self.num_ops)
        return [(self.ops[int(i)], float(s)) for i, s in zip(names, signs)]

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        level = self.magnitude / 10.0
        for name, sign in self.draw(rng):
            clip = RANDAUGMENT_OPS[name](clip, level, sign)
        return clip

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude})"


# ---------------------------------------------------------------------------------------------
# Mixup and CutMix


def mix_batch(clips: torch.Tensor, labels: torch.Tensor, num_classes: int, *, mixup: float = 0.0,
              cutmix: float = 0.0, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a batch: ``(B, C, T, H, W)`` float clips and ``(B,)`` labels ->
    mixed clips and ``(B, num_classes)`` soft targets.

    Clip ``i`` is mixed with clip ``B - 1 - i`` (the batch reversed, as timm does). ``mixup``
    and ``cutmix`` are the ``alpha`` of ``lam ~ Beta(alpha, alpha)``; 0 turns one off, and
    with both on each batch uses one of them with probability 1/2. CutMix pastes one box of
    area ``1 - lam`` at the same place in every frame and recomputes ``lam`` from the box as
    clipped to the frame.
    """
    if mixup <= 0 and cutmix <= 0:
        raise ValueError("mix_batch needs mixup > 0 or cutmix > 0")
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    other = clips.flip(0)
    if use_cutmix:
        h, w = clips.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        mixed = clips.clone()
        mixed[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        mixed = clips * lam + other * (1.0 - lam)
    one_hot = F.one_hot(labels, num_classes).to(clips.dtype if clips.is_floating_point() else torch.float32)
    return mixed, one_hot * lam + one_hot.flip(0) * (1.0 - lam)
