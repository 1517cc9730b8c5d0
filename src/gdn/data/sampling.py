"""Clip samplers: which frames of a video make a clip (paper section 3.2, TSN).

A sampler is a small callable ``sampler(num_frames, rng) -> np.ndarray`` of shape
``(clips, frames)`` holding frame indices in ``[0, num_frames)``. Indices may repeat (short
videos) and are in temporal order within a clip. Randomness comes only from the ``rng`` passed
in, so a sample's clip is a function of whatever seeded that generator (the dataset seeds it
with ``(seed, epoch, index)``), never of worker state.

- :class:`SegmentSampler` (TSN): the video is cut into ``frames`` equal segments; training takes
  a random frame in each, evaluation the centre frame. ``clips=N`` evaluation views take the
  frames at positions ``(k + 0.5) / N`` inside each segment, ``k = 0..N-1`` (N=1: the centre).
- :class:`DenseSampler`: ``frames`` consecutive frames ``stride`` apart; random start in
  training, centred (or N evenly spaced starts) in evaluation.

Videos too short for a sampler repeat frames deterministically: ``floor(i * n / frames)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SegmentSampler", "DenseSampler", "build_sampler", "uniform_indices"]


def uniform_indices(num_frames: int, frames: int) -> np.ndarray:
    """``floor(i * num_frames / frames)`` for ``i < frames``: the first frame of each segment.

    Used for videos shorter than a clip: every frame appears, in order, repeated as evenly as
    possible (``num_frames=1`` gives all zeros).
    """
    return (np.arange(frames, dtype=np.int64) * num_frames) // frames


def _check(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample a clip from a video with {num_frames} frames")


class SegmentSampler:
    """TSN segment sampling: one frame in each of ``frames`` equal segments.

    Args:
        frames: frames per clip (T), also the number of segments.
        train: random frame per segment (True) or fixed positions (False).
        clips: evaluation views per video, at evenly spaced positions inside each segment.
    """

    def __init__(self, frames: int, *, train: bool, clips: int = 1) -> None:
        if frames < 1 or clips < 1:
            raise ValueError(f"frames and clips must be >= 1, got frames={frames}, clips={clips}")
        self.frames, self.train, self.clips = frames, train, clips

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        _check(num_frames)
        t, n = self.frames, num_frames
        if n < t:
            return np.tile(uniform_indices(n, t), (self.clips, 1))
        starts = np.arange(t, dtype=np.float64) * n / t  # segment i covers [starts[i], starts[i] + n/t)
        if self.train:
            if rng is None:
                raise ValueError("training sampling needs a random generator")
            pos = rng.random((self.clips, t))
        else:
            pos = np.broadcast_to(((np.arange(self.clips) + 0.5) / self.clips)[:, None], (self.clips, t))
        idx = np.floor(starts[None, :] + pos * (n / t)).astype(np.int64)
        return np.minimum(idx, n - 1)

    def __repr__(self) -> str:
        return f"SegmentSampler(frames={self.frames}, train={self.train}, clips={self.clips})"


class DenseSampler:
    """``frames`` consecutive frames ``stride`` apart (I3D/SlowFast style dense sampling).

    Training starts at a random frame; evaluation at ``floor((n - span) * (k + 0.5) / clips)``
    for clip ``k`` (one clip: centred). Videos shorter than the span fall back to
    :func:`uniform_indices`.
    """

    def __init__(self, frames: int, *, train: bool, clips: int = 1, stride: int = 2) -> None:
        if frames < 1 or clips < 1 or stride < 1:
            raise ValueError(f"frames, clips and stride must be >= 1, got {frames}, {clips}, {stride}")
        self.frames, self.train, self.clips, self.stride = frames, train, clips, stride

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        _check(num_frames)
        span = (self.frames - 1) * self.stride + 1
        if num_frames < span:
            return np.tile(uniform_indices(num_frames, self.frames), (self.clips, 1))
        room = num_frames - span  # the last valid start
        if self.train:
            if rng is None:
                raise ValueError("training sampling needs a random generator")
            start = rng.integers(0, room + 1, size=self.clips)
        else:
            start = np.floor(room * (np.arange(self.clips) + 0.5) / self.clips).astype(np.int64)
        return start[:, None] + np.arange(self.frames, dtype=np.int64)[None, :] * self.stride

    def __repr__(self) -> str:
        return (f"DenseSampler(frames={self.frames}, train={self.train}, clips={self.clips}, "
                f"stride={self.stride})")


def build_sampler(name: str, frames: int, *, train: bool, clips: int = 1, stride: int = 2):
    """``"tsn"`` -> :class:`SegmentSampler`, ``"dense"`` -> :class:`DenseSampler`."""
    if name == "tsn":
        return SegmentSampler(frames, train=train, clips=clips)
    if name == "dense":
        return DenseSampler(frames, train=train, clips=clips, stride=stride)
    raise ValueError(f"unknown sampling {name!r}: use 'tsn' (segments) or 'dense'")
