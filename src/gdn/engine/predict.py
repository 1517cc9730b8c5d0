"""Predict the classes of videos, of the windows of long videos, and of live streams.

All three see clips as `gdn test` does: the checkpoint's frames, size, short side, clip sampling,
eval transform and protocol (`gdn.data.sampling`, docs/protocols.md). Whole videos go through `gdn.data.datasets.VideoDataset` itself (wrapped as a
one-off annotation list, label -1); windows (`Predictor.predict_windows`, `gdn.data.windows`) and
live streams (`Predictor.stream`) sample each window with the same sampler and transform, so a
window spanning a whole video gets that video's scores. `clips=N` averages N temporal views (of
the video or of each window) as the checkpoint's protocol does (`gdn.engine.evaluate.view_average`).

Live sources: a reader thread decodes and keeps the last window's pictures in a ring; every
`stride` frames it posts the window's sampled pictures, and the caller's thread converts and
scores the most recent one. When scoring is slower than the stride the reader never waits: a
window not yet taken is replaced by the newer one (and counted), so predictions stay current.
Scores are averaged over the last `smooth` predictions. A source that stalls longer than
`timeout` or drops its connection raises `StreamError`, after `reconnect` retries with back-off
(1 s, 2 s, 4 s, ... at most 30 s; the count starts again once a frame arrives); the end of the
stream ends the iteration.

Pictures (overlay videos, timeline PNGs) are drawn by `gdn.engine.render`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gdn.data.annotations import Annotations, Entry
from gdn.data.datasets import VideoDataset
from gdn.data.decode import VIDEO_SUFFIXES, DecodeError, FrameStream, RgbConverter, StreamError
from gdn.data.sampling import build_sampler, check_clips
from gdn.data.transforms import EvalTransform, stack_frames_last
from gdn.data.windows import Span, SpanError, Window, WindowSampler, read_windows
from gdn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
from gdn.engine.distributed import resolve_device
from gdn.engine.evaluate import score_clips, view_average
from gdn.errors import UsageError
from gdn.models.fast import compile_for_inference

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor", "expand_inputs"]


@dataclass
class Prediction:
    """The top classes of a video, or of one window of it (`window` set)."""

    path: str
    topk: list[tuple[int, str, float]]   # (class index, class name, probability), best first
    scores: np.ndarray                    # (K,) softmax, averaged over views (and smoothed, live)
    window: Window | None = None

    def to_dict(self) -> dict:
        out: dict = {"path": self.path}
        if self.window is not None:
            w = self.window
            out.update(window=w.index, start=round(w.start_time, 4), end=round(w.end_time, 4),
                       start_frame=w.start, end_frame=w.end)
        out["predictions"] = [{"index": i, "class": c, "probability": p} for i, c, p in self.topk]
        return out


def expand_inputs(paths: list[str]) -> list[Path]:
    """Command-line inputs -> videos and frame folders.

    A folder holding JPEG frames is one input; a folder without frames but with video files
    stands for its videos (sorted); anything else is passed through so that reading it reports
    the problem for that path.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not any(f.suffix.lower() in (".jpg", ".jpeg") for f in p.iterdir()):
            videos = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            if videos:
                out.extend(videos)
                continue
        out.append(p)
    return out


class Predictor:
    """A checkpoint's model plus its evaluation data settings.

    Args:
        checkpoint: path of a `gdn train` checkpoint (loaded safely).
        device: "auto" | "cpu" | "cuda" | "cuda:N".
        clips: temporal views averaged per video or window (1: the paper's centre-frame protocol).
        compile: torch.compile the model.
        amp: autocast mode for inference ("auto": bf16 on CUDA).
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "auto", clips: int = 1,
                 compile: bool = False, amp: str = "auto") -> None:
        model, self.cfg, self.classes = build_model_from_checkpoint(load_checkpoint(checkpoint))
        d = self.cfg.data
        try:
            check_clips(d.sampling, d.protocol, clips)
        except ValueError as e:
            raise UsageError(f"{checkpoint}: {e}") from None
        self.average = view_average(d.protocol, self.cfg.model.name)
        self.device = torch.device(resolve_device(device))
        self.model = model.to(self.device).eval()
        if compile:
            self.model = compile_for_inference(self.model)
        self.clips, self.amp = clips, amp
        self.sampler = build_sampler(d.sampling, d.frames, train=False, clips=clips, protocol=d.protocol)
        self.transform = EvalTransform(d.size, d.short_side, crops=1, protocol=d.protocol)

    def dataset(self, paths: list[Path]) -> VideoDataset:
        """The inputs as an evaluation dataset (label -1) with the checkpoint's data settings."""
        entries = [Entry(id=str(p), path=p, label=-1, line=i + 1, frames=p.is_dir())
                   for i, p in enumerate(paths)]
        ann = Annotations(name="predict", split="inputs", file=Path("<command line>"),
                          classes=list(self.classes), entries=entries)
        d = self.cfg.data
        return VideoDataset(ann, frames=d.frames, train=False, size=d.size, short_side=d.short_side,
                            clips=self.clips, crops=1, sampling=d.sampling, protocol=d.protocol)

    def views(self, clips: list[list[np.ndarray]]) -> torch.Tensor:
        """Sampled frames (``clips`` lists of ``T`` uint8 ``(H, W, 3)`` arrays) -> the uint8
        ``(clips, C, T, S, S)`` views the model scores, as the dataset's evaluation item."""
        return stack_frames_last([self.transform(c) for c in clips], torch.cat)

    @torch.no_grad()
    def score(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Softmax ``(B, K)`` of ``B`` inputs' views (each ``(V, C, T, S, S)``), the views averaged
        as the checkpoint's protocol averages them."""
        return score_clips(self.model, torch.stack(views), self.device, self.amp, self.average).cpu()

    def top_classes(self, probs: torch.Tensor, topk: int) -> list[tuple[int, str, float]]:
        """The ``topk`` best of one input's class probabilities ``(K,)``: (index, name, probability)."""
        values, classes = probs.topk(min(topk, len(self.classes)))
        return [(int(c), self.classes[int(c)], float(v)) for v, c in zip(values, classes)]

    def _prediction(self, path: str, probs: torch.Tensor, topk: int, window: Window | None = None) -> Prediction:
        return Prediction(path=path, topk=self.top_classes(probs, topk), scores=probs.numpy(), window=window)

    def predict_item(self, ds: VideoDataset, index: int, topk: int = 5) -> Prediction:
        """Prediction for item `index` of `self.dataset(...)`; DecodeError names the file."""
        path = ds.entries[index].path
        try:
            item = ds[index]
        except DecodeError as e:  # the dataset appends its split and index: keep the decoder's message
            raise DecodeError(str(e.__cause__ or e)) from None
        except OSError as e:
            raise DecodeError(f"{path}: cannot be read ({e})") from None
        clip = item["clip"] if item["clip"].dim() == 5 else item["clip"].unsqueeze(0)
        return self._prediction(str(path), self.score([clip])[0], topk)

    def predict_windows(self, path: str | Path, window: Span | str, stride: Span | str | None = None,
                        *, topk: int = 5, batch: int = 8) -> Iterator[Prediction]:
        """The top classes of every window of a long video or frame folder, in order.

        ``window`` and ``stride`` are `Span`s or their text (``"4"`` or ``"4s"`` seconds,
        ``"64f"`` frames; ``stride=None``: the window). Windows, and how the last partial one is
        handled, are those of `gdn.data.windows`. The video is decoded once, as a stream, and
        windows are scored ``batch`` at a time as they complete: memory does not grow with the
        video's length. Raises DecodeError naming the file, SpanError for impossible spans.
        """
        pending: list[tuple[Window, torch.Tensor]] = []

        def flush() -> Iterator[Prediction]:
            probs = self.score([v for _, v in pending])
            yield from (self._prediction(str(path), p, topk, w) for (w, _), p in zip(pending, probs))
            pending.clear()

        for w, frames in read_windows(path, window, stride, self.sampler):
            pending.append((w, self.views(frames)))
            if len(pending) == batch:
                yield from flush()
        if pending:
            yield from flush()

    def stream(self, source: str, window: Span | str, stride: Span | str | None = None, *,
               smooth: int = 1, topk: int = 5, format: str | None = None, timeout: float = 10.0,
               reconnect: int = 0, backoff: float = 1.0) -> Iterator[Prediction]:
        """Predictions on a live source, one every ``stride`` (see the module docstring).

        ``source``: anything `gdn.data.decode.FrameStream` opens live (a URL, a device with
        ``format``, a named pipe, "-" for standard input). Each prediction's scores are the mean
        softmax of the last ``smooth`` windows scored; its window counts frames from the first
        frame read (across reconnections). Stops at the end of the stream; raises StreamError
        when the source cannot be opened, stalls for ``timeout`` seconds or drops the
        connection, ``reconnect`` retries (``backoff`` seconds, doubling, at most 30) later.
        Closing the iterator (or Ctrl-C in the caller) stops the reader.
        """
        if smooth < 1:
            raise UsageError(f"smooth must be >= 1, got {smooth}")
        reader = _LiveReader(source, lambda rate: WindowSampler.from_spans(window, stride, self.sampler, rate),
                             format=format, timeout=timeout, reconnect=reconnect, backoff=backoff)
        reader.start()
        recent: deque[torch.Tensor] = deque(maxlen=smooth)
        to_rgb = RgbConverter()
        scored = 0
        try:
            while (item := reader.take()) is not None:
                w, pictures = item
                probs = self.score([self.views([[to_rgb(f) for f in row] for row in pictures])])[0]
                recent.append(probs)
                scored += 1
                yield self._prediction(source, torch.stack(tuple(recent)).mean(0), topk, w)
        finally:
            reader.stop()
            if reader.replaced:
                log.info("%s: %d of %d windows were replaced by a newer one before they could be "
                         "scored (scoring is slower than the stride)", source, reader.replaced,
                         scored + reader.replaced)


class _LiveReader(threading.Thread):
    """Decodes a live source on its own thread and posts each window's sampled pictures to a
    one-slot mailbox that the scoring thread empties (`take`); see `Predictor.stream`."""

    def __init__(self, source: str, make_windows, *, format: str | None, timeout: float,
                 reconnect: int, backoff: float) -> None:
        super().__init__(name=f"gdn-live-{source}", daemon=True)  # a blocked read never holds up exit
        self.source, self.make_windows = source, make_windows
        self.format, self.timeout, self.reconnect, self.backoff = format, timeout, reconnect, backoff
        self._cond = threading.Condition()
        self._item: tuple[Window, list[list]] | None = None
        self._final: BaseException | bool = False  # True: end of stream; an exception: failure
        self._stopping = threading.Event()
        self.replaced = 0  # windows posted and replaced before they were taken

    def take(self) -> tuple[Window, list[list]] | None:
        """The newest window not yet taken (waiting for it), or None at the end of the stream;
        raises the reader's error once its windows are taken."""
        with self._cond:
            while self._item is None and self._final is False:
                self._cond.wait()
            if self._item is not None:
                item, self._item = self._item, None
                return item
            if isinstance(self._final, BaseException):
                raise self._final
            return None

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=1.0)

    def _post(self, item=None, final: BaseException | bool = False) -> None:
        with self._cond:
            if item is not None:
                self.replaced += self._item is not None
                self._item = item
            if final is not False:
                self._final = final
            self._cond.notify()

    def run(self) -> None:
        try:
            self._read()
        except BaseException as e:  # noqa: BLE001 - handed to the scoring thread, which raises it
            self._post(final=e)

    def _read(self) -> None:
        windows: WindowSampler | None = None
        offsets: list[list[int]] = []
        total = posted = failures = 0  # frames read (all connections), windows posted, failures in a row
        while not self._stopping.is_set():
            try:
                with FrameStream(self.source, live=True, format=self.format, timeout=self.timeout) as frames:
                    if windows is None:
                        try:
                            windows = self.make_windows(frames.rate)
                        except SpanError as e:
                            raise SpanError(f"{self.source}: {e}") from None
                        offsets = windows.indices(windows.full(0)).tolist()  # the same in every window
                    ring: deque = deque(maxlen=windows.window)  # a window never spans a reconnection
                    for frame in frames:
                        if self._stopping.is_set():
                            return
                        ring.append(frame)
                        total += 1
                        failures = 0
                        if len(ring) == windows.window and (frames.decoded - windows.window) % windows.stride == 0:
                            w = Window(posted, total - windows.window, total, windows.rate)
                            self._post(item=(w, [[ring[i] for i in row] for row in offsets]))
                            posted += 1
                self._post(final=True)  # the end of the stream
                return
            except StreamError as e:
                if failures >= self.reconnect:
                    hint = "" if self.reconnect else "; --reconnect N retries"
                    raise StreamError(f"{e}{hint}", stalled=e.stalled) from None
                delay = min(30.0, self.backoff * 2 ** failures)
                failures += 1
                log.warning("%s; reconnecting in %g s (retry %d of %d)", e, delay, failures, self.reconnect)
                if self._stopping.wait(delay):
                    return
