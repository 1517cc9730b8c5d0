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

The peers' protocols (``protocol="tsm"``: the TSM repository's ``ops/dataset.py``;
``"mmaction"``: MMAction2's ``SampleFrames``) sample with their own formulas, written out in
:class:`PeerSegmentSampler` and :class:`PeerDenseSampler`, so that a checkpoint of theirs sees
the frames it was evaluated on (docs/protocols.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PROTOCOLS", "SAMPLINGS", "SegmentSampler", "DenseSampler", "PeerSegmentSampler",
           "PeerDenseSampler", "build_sampler", "check_clips", "uniform_indices"]

SAMPLINGS = ("tsn", "dense")
# gdn's own sampling and pixels, and the two peers' evaluation protocols (docs/protocols.md)
PROTOCOLS = ("gdn", "tsm", "mmaction")


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


class PeerSegmentSampler:
    """TSN segment sampling as the TSM repository and MMAction2 do it (``peer`` "tsm" or
    "mmaction"), for exact reproduction of their recipes and published numbers.

    Training: ``n // T``-frame integer segments, a random frame in each; the last
    ``n - T * (n // T)`` frames are never drawn. Videos shorter than T: TSM takes frame 0 for
    every segment, MMAction2 ``round(i * n / T)`` (NumPy's round half to even, wrapped modulo
    n). gdn's :class:`SegmentSampler` covers the whole video with fractional segments instead.

    Evaluation: ``floor(tick * i + tick / 2)`` with ``tick = n / T`` for every length (the same
    float arithmetic as both peers); ``clips=2`` is their ``twice_sample``: that clip, then
    ``floor(tick * i)``. They offer no other number of segment clips.
    """

    def __init__(self, frames: int, *, train: bool, clips: int = 1, peer: str = "tsm") -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        _check_peer(peer)
        check_clips("tsn", peer, clips)
        self.frames, self.train, self.clips, self.peer = frames, train, clips, peer

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        _check(num_frames)
        t, n = self.frames, num_frames
        i = np.arange(t, dtype=np.int64)
        if self.train:
            if rng is None:
                raise ValueError("training sampling needs a random generator")
            segment = n // t
            if segment > 0:
                return (i * segment + rng.integers(0, segment, size=t))[None, :]
            if self.peer == "tsm":
                return np.zeros((1, t), dtype=np.int64)
            return np.mod(np.around(i * (n / t)).astype(np.int64), n)[None, :]
        tick = n / t
        views = [np.floor(i * tick + tick / 2)]  # the 0.5 point of each segment
        if self.clips == 2:
            views.append(np.floor(i * tick))  # twice_sample: and its start
        return np.stack(views).astype(np.int64)

    def __repr__(self) -> str:
        return (f"PeerSegmentSampler(frames={self.frames}, train={self.train}, clips={self.clips}, "
                f"peer={self.peer!r})")


class PeerDenseSampler:
    """Dense clips (``frames`` frames ``stride`` apart) as the TSM repository and MMAction2 take
    them; indices past the end wrap around (``% n``: short videos loop).

    - TSM (``--dense_sample``; :func:`build_sampler` gives it TSM's stride ``64 // T``):
      ``T * stride`` frames per clip window;
      training starts at ``randint(0, n - T * stride)`` (high end excluded, as NumPy's randint),
      evaluation at ``floor(linspace(0, n - T * stride, clips))`` (10 clips in its test script).
    - MMAction2 (``SampleFrames(clip_len=T, frame_interval=stride)``): training starts anywhere
      in ``[0, n - T * stride]``; evaluation at ``round(k * (n - span) / (clips - 1))``
      (NumPy's round half to even, both ends included), or ``(n - span) // 2`` for one clip,
      where ``span = (T - 1) * stride + 1``.
    """

    def __init__(self, frames: int, *, train: bool, clips: int = 1, stride: int = 2,
                 peer: str = "tsm") -> None:
        if frames < 1 or clips < 1 or stride < 1:
            raise ValueError(f"frames, clips and stride must be >= 1, got {frames}, {clips}, {stride}")
        _check_peer(peer)
        check_clips("dense", peer, clips)
        self.frames, self.train, self.clips, self.stride, self.peer = frames, train, clips, stride, peer

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        _check(num_frames)
        n, t, s = num_frames, self.frames, self.stride
        if self.train and rng is None:
            raise ValueError("training sampling needs a random generator")
        if self.peer == "tsm":
            last = max(0, n - t * s)  # TSM's sample_pos - 1
            if self.train:
                start = np.array([0 if last == 0 else int(rng.integers(0, last))])
            else:
                start = np.floor(np.linspace(0, last, num=self.clips)).astype(np.int64)
        elif self.train:
            room = n - t * s + 1  # MMAction2's avg_interval for one training clip
            start = np.array([int(rng.integers(0, room)) if room > 0 else 0])
        else:
            room = max(n - ((t - 1) * s + 1), 0)
            if self.clips > 1:
                start = np.round(np.arange(self.clips) * (room / (self.clips - 1))).astype(np.int64)
            else:
                start = np.array([room // 2])
        return (start[:, None] + np.arange(t, dtype=np.int64)[None, :] * s) % n

    def __repr__(self) -> str:
        return (f"PeerDenseSampler(frames={self.frames}, train={self.train}, clips={self.clips}, "
                f"stride={self.stride}, peer={self.peer!r})")


def _check_peer(peer: str) -> None:
    if peer not in ("tsm", "mmaction"):
        raise ValueError(f"unknown peer {peer!r}: use 'tsm' or 'mmaction'")


def check_clips(sampling: str, protocol: str, clips: int) -> None:
    """Raise ValueError, saying what to use instead, when ``protocol`` has no ``sampling``
    evaluation with ``clips`` temporal views (the peers take 1 or 2 segment clips)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}: use 'tsn' (segments) or 'dense'")
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if protocol != "gdn" and sampling == "tsn" and clips > 2:
        raise ValueError(f"the {protocol} protocol samples 1 segment clip, or 2 (twice_sample), not {clips}; "
                         "use --clips 1 or 2, or --protocol gdn for more")


def build_sampler(name: str, frames: int, *, train: bool, clips: int = 1, stride: int = 2,
                  protocol: str = "gdn"):
    """The sampler of ``name`` (``"tsn"``: segments, ``"dense"``) as ``protocol`` takes it:
    gdn's :class:`SegmentSampler` / :class:`DenseSampler`, or the peers'
    :class:`PeerSegmentSampler` / :class:`PeerDenseSampler`. Under "tsm" dense clips take
    TSM's stride, ``64 // frames``, instead of ``stride``."""
    check_clips(name, protocol, clips)
    if protocol != "gdn":
        if name == "tsn":
            return PeerSegmentSampler(frames, train=train, clips=clips, peer=protocol)
        if protocol == "tsm":  # TSM's dense clips span 64 frames whatever T (``t_stride = 64 // T``)
            stride = max(1, 64 // frames)
        return PeerDenseSampler(frames, train=train, clips=clips, stride=stride, peer=protocol)
    if name == "tsn":
        return SegmentSampler(frames, train=train, clips=clips)
    return DenseSampler(frames, train=train, clips=clips, stride=stride)
