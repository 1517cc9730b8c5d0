"""Windows over a long video: which frames make the clip of each window.

A window is a span of consecutive frames ``[start, end)``. Its clip is taken from the span by
the checkpoint's own clip sampler (`gdn.data.sampling`), exactly as evaluation takes a clip from
a whole video: with TSN sampling, ``T`` segments over the window and the centre frame of each.
A model therefore sees each window as it saw its training videos.

Windows are ``window`` frames long and start every ``stride`` frames: ``[0, W)``, ``[S, S + W)``,
... as long as they fit. **The last partial window**: when frames remain after the last window
that fits, one more window of the full length ends at the last frame, ``[N - W, N)``; it overlaps
its predecessor more than the others do, and no window is shorter than the model's usual view.
A video shorter than one window is one window ``[0, N)``, sampled like any short video (frames
repeat). So the windows cover ``[0, N)`` exactly: every frame lies in a window and no window
reaches past the end. ``stride <= window`` is required (a larger stride would skip frames).

`read_windows` reads a video once, as a stream, and hands over each window's sampled frames as
soon as its last frame is decoded; only sampled frames are converted to RGB. It holds the last
``window`` decoded pictures (the decoder's own, unconverted: YUV 4:2:0 is 1.5 bytes a pixel, so
64 frames of 320x240 take 7 MB, 64 of 1920x1080 take 200 MB), which the last partial window
needs, and nothing else: memory does not grow with the video's length.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from gdn.data.decode import DecodeError, FrameStream, RgbConverter, _frame_names, _read_folder
from gdn.errors import GdnError

log = logging.getLogger(__name__)

__all__ = ["FOLDER_RATE", "Span", "SpanError", "Window", "WindowSampler", "frame_rate", "read_windows"]

FOLDER_RATE = Fraction(12)  # frames per second of a JPEG frame folder (Something-Something's)

Sampler = Callable[[int], np.ndarray]  # num_frames -> (clips, T) indices, as gdn.data.sampling's


class SpanError(GdnError, ValueError):
    """A window or stride that is not a length, or cannot be one for this video."""


@dataclass(frozen=True)
class Span:
    """A length in seconds (``"4"``, ``"2.5s"``) or in frames (``"64f"``): how long a window is or
    how far apart windows start."""

    value: float
    unit: str  # "s" or "f"

    @classmethod
    def parse(cls, text: str | int | float | Span) -> Span:
        if isinstance(text, Span):
            return text
        if isinstance(text, (int, float)):
            return cls(float(text), "s")
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)?\s*", str(text))
        if not m or float(m[1]) <= 0 or (m[2] == "f" and not float(m[1]).is_integer()):
            raise SpanError(f"{text!r} is not a length: give seconds ('4', '2.5s') or a whole "
                             "number of frames ('64f')")
        return cls(float(m[1]), m[2] or "s")

    def frames(self, rate: Fraction | float | None) -> int:
        """The span in frames at ``rate`` frames per second (seconds are rounded, at least 1)."""
        if self.unit == "f":
            return int(self.value)
        if not rate:
            raise SpanError(f"{self} is in seconds but the frame rate is unknown; give it in "
                             "frames, e.g. '64f'")
        return max(1, round(self.value * float(rate)))

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"


@dataclass(frozen=True)
class Window:
    """Frames ``[start, end)`` of a video whose frame rate is ``rate``; ``index`` counts windows
    from 0."""

    index: int
    start: int
    end: int
    rate: Fraction = FOLDER_RATE

    @property
    def start_time(self) -> float:
        """Seconds from the first frame to this window's first frame."""
        return float(self.start / self.rate)

    @property
    def end_time(self) -> float:
        """Seconds from the first frame to the end of this window's last frame."""
        return float(self.end / self.rate)


class WindowSampler:
    """Windows of a frame stream -> the frame indices of each window's clip.

    Args:
        window: frames per window (W).
        stride: frames between the starts of two windows (S, 1 <= S <= W).
        sampler: a clip sampler of `gdn.data.sampling` in evaluation mode (``sampler(n)`` gives
            ``(clips, T)`` indices into ``n`` frames); the checkpoint's own.
        rate: frames per second, for the windows' times.
    """

    def __init__(self, window: int, stride: int, sampler: Sampler, rate: Fraction = FOLDER_RATE) -> None:
        if window < 1 or not 1 <= stride <= window:
            raise SpanError(f"need 1 <= stride <= window (in frames), got window {window}, stride "
                             f"{stride}: a stride longer than the window would skip frames")
        self.window, self.stride, self.sampler, self.rate = window, stride, sampler, Fraction(rate)
        frames = getattr(sampler, "frames", 0)
        if window < frames:
            log.warning("windows of %d frames are shorter than the %d frames of a clip: frames "
                        "repeat within each clip", window, frames)

    @classmethod
    def from_spans(cls, window: Span | str, stride: Span | str | None, sampler: Sampler,
                   rate: Fraction | None) -> WindowSampler:
        """Window and stride given as `Span`s (or their text); ``stride=None`` is the window.
        ``rate=None`` (unknown) is allowed when both are in frames (times are then at 12 fps)."""
        w = Span.parse(window).frames(rate)
        s = w if stride is None else Span.parse(stride).frames(rate)
        return cls(w, s, sampler, rate or FOLDER_RATE)

    def full(self, k: int) -> Window:
        """The ``k``-th window that fits: ``[kS, kS + W)``."""
        return Window(k, k * self.stride, k * self.stride + self.window, self.rate)

    def windows(self, num_frames: int) -> list[Window]:
        """Every window of a video of ``num_frames`` frames, the last partial one included (see
        the module docstring)."""
        if num_frames < 1:
            return []
        if num_frames <= self.window:
            return [Window(0, 0, num_frames, self.rate)]
        out = [self.full(k) for k in range((num_frames - self.window) // self.stride + 1)]
        if out[-1].end < num_frames:
            out.append(Window(len(out), num_frames - self.window, num_frames, self.rate))
        return out

    def indices(self, window: Window) -> np.ndarray:
        """``(clips, T)`` frame indices of ``window``'s clip, counted from the video's first frame."""
        return window.start + self.sampler(window.end - window.start)

    def __repr__(self) -> str:
        return f"WindowSampler(window={self.window}, stride={self.stride}, rate={self.rate}, {self.sampler})"


def frame_rate(path: str | Path, folder_rate: Fraction | float = FOLDER_RATE) -> Fraction:
    """Frames per second of a video file (`FrameStream.rate`: its stream's average rate, else
    FFmpeg's guess), ``folder_rate`` for a frame folder or a stream that does not say."""
    if os.path.isdir(path):
        return Fraction(folder_rate)
    with FrameStream(path) as stream:
        return stream.rate or Fraction(folder_rate)


def _split(frames: list[np.ndarray], t: int) -> list[list[np.ndarray]]:
    return [frames[k : k + t] for k in range(0, len(frames), t)]


def read_windows(path: str | Path, window: Span | str, stride: Span | str | None, sampler: Sampler,
                 folder_rate: Fraction | float = FOLDER_RATE) -> Iterator[tuple[Window, list[list[np.ndarray]]]]:
    """Each window of the video file or frame folder ``path``, in order, with its sampled frames:
    ``clips`` lists of ``T`` uint8 ``(H, W, 3)`` arrays, as `VideoDataset.read_frames` gives a
    whole video's.

    A video is decoded once, as a stream (`FrameStream`), and a window is handed over as soon as
    its last frame is decoded; the frame rate (for spans in seconds and for the windows' times) is
    the video stream's, ``folder_rate`` (12 fps) for a frame folder, whose sampled files alone are
    read.
    Raises DecodeError naming the file, SpanError for spans that cannot be resolved.
    """
    if os.path.isdir(path):
        windows = WindowSampler.from_spans(window, stride, sampler, Fraction(folder_rate))
        names = _frame_names(path)  # listed once, not per window
        for w in windows.windows(len(names)):
            idx = windows.indices(w)
            yield w, _split(_read_folder(path, idx.ravel().tolist(), names), idx.shape[1])
        return
    with FrameStream(path) as stream:
        try:
            windows = WindowSampler.from_spans(window, stride, sampler, stream.rate)
        except SpanError as e:
            raise SpanError(f"{path}: {e}") from None
        yield from _stream_windows(stream, windows)


def _stream_windows(frames: FrameStream, windows: WindowSampler
                    ) -> Iterator[tuple[Window, list[list[np.ndarray]]]]:
    ring: deque = deque(maxlen=windows.window)  # the last W decoded pictures: frames [n - len(ring), n)
    converted: dict[int, np.ndarray] = {}  # frame index -> RGB, for frames sampled by several windows
    to_rgb = RgbConverter()
    n = k = 0  # frames decoded, windows handed over

    def take(w: Window) -> list[list[np.ndarray]]:
        idx = windows.indices(w)
        first = n - len(ring)
        for i in idx.ravel().tolist():
            if i not in converted:
                converted[i] = to_rgb(ring[i - first])
        return [[converted[i] for i in row] for row in idx.tolist()]

    for frame in frames:
        ring.append(frame)
        n += 1
        w = windows.full(k)
        if w.end == n:  # windows end S >= 1 frames apart: at most one ends here
            yield w, take(w)
            k += 1
        for i in [i for i in converted if i < n - windows.window]:
            del converted[i]
    if n == 0:
        raise DecodeError(f"{frames.source}: contains no video frames; re-download or re-encode it")
    for w in windows.windows(n)[k:]:  # the last partial window, or the only one of a short video
        yield w, take(w)
