"""Video embeddings: the pooled pre-classifier features of a trained model, for retrieval,
clustering and temporal localisation.

The embedding of a clip is :func:`embed`: ``model.forward_features`` gives one ``D``-vector per
frame (``(B, T, D)``, after the backbone's global spatial pooling), averaged over the ``T`` frames:
the TSN consensus taken before the classifier instead of after it (the logits are ``fc`` of it, up
to dropout). A video gets the embedding of the clip the evaluation protocol takes (the
checkpoint's frames and size, one centre clip and crop: :func:`extract_features`), or one per
window of a long video (:func:`extract_windows`: windows of ``window`` frames every ``stride``
frames, each sampled as a clip of its own).

Rows are saved with the video id, the label (-1: unknown) and where they lie in the video, in
frames and in seconds (:func:`save_features`, ``.npz``; ``.parquet`` when pyarrow is installed).

Windows read their frames through ``gdn.data.decode.read_frames`` in groups of at most
``MAX_FRAMES_PER_READ`` distinct frames; each group decodes the video from its start, so a long
video with many groups is decoded several times. A stream reader that reads each frame once
(the windowed prediction of ``gdn predict``) is to replace ``_window_clips``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
from torch import nn

from gdn.data.datasets import VideoDataset
from gdn.data.decode import count_frames, count_frames_cached, read_frames
from gdn.data.loader import build_loader
from gdn.data.sampling import SegmentSampler
from gdn.data.transforms import EvalTransform, model_input
from gdn.engine.evaluate import autocast_context
from gdn.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["Features", "embed", "extract_features", "extract_windows", "frame_rate", "parse_span",
           "window_starts", "save_features", "load_features", "MAX_FRAMES_PER_READ"]

MAX_FRAMES_PER_READ = 512
FRAME_FOLDER_FPS = 12.0  # Something-Something's rate; frame folders store none


@dataclass
class Features:
    """One row per video or window; ``features`` is ``(N, D)`` float32."""

    video_ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    start_frame: list[int] = field(default_factory=list)
    end_frame: list[int] = field(default_factory=list)  # exclusive
    start_s: list[float] = field(default_factory=list)
    end_s: list[float] = field(default_factory=list)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def extend(self, other: Features) -> None:
        for name in ("video_ids", "labels", "start_frame", "end_frame", "start_s", "end_s"):
            getattr(self, name).extend(getattr(other, name))
        self.features = other.features if not len(self.features) else np.concatenate([self.features, other.features])

    def __len__(self) -> int:
        return len(self.video_ids)


@torch.no_grad()
def embed(model: nn.Module, clips: torch.Tensor, device: torch.device | str = "cpu", amp: str = "none") -> torch.Tensor:
    """Embeddings ``(B, D)`` (float32, on the CPU) of clips ``(B, C, T, H, W)``, or of multi-view
    clips ``(B, V, C, T, H, W)`` averaged over the views: ``model.forward_features`` averaged
    over the frames. uint8 pixels are normalised on ``device`` (``model_input``). The model
    should be in eval mode (BatchNorm statistics, no dropout)."""
    device = torch.device(device)
    x = model_input(clips, device)
    views = 1
    if x.dim() == 6:  # (B, V, C, T, H, W) -> (B*V, C, T, H, W)
        views = x.shape[1]
        x = x.flatten(0, 1)
    with autocast_context(device, amp):
        frames = model.forward_features(x)  # (B*V, T, D)
    return frames.float().mean(dim=1).view(-1, views, frames.shape[-1]).mean(dim=1).cpu()


def frame_rate(path: str | Path, default: float = FRAME_FOLDER_FPS) -> float:
    """Frames per second of a video file (its stream's average rate), ``default`` for a frame
    folder or a stream that does not say."""
    if Path(path).is_dir():
        return default
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else default


def extract_features(model: nn.Module, dataset: VideoDataset, *, batch_size: int = 16, workers: int = 0,
                     device: torch.device | str = "cpu", amp: str = "none", fps: float = FRAME_FOLDER_FPS) -> Features:
    """One embedding per video of an evaluation ``dataset`` (its sampling, views and crops), in
    dataset order, spanning the whole video. A file that cannot be read raises DecodeError."""
    model.eval()
    loader = build_loader(dataset, batch_size, train=False, workers=workers)
    parts, indices = [], []
    for batch in loader:
        parts.append(embed(model, batch["clip"], device, amp).numpy())
        indices.extend(int(i) for i in batch["index"])
    out = Features(features=np.concatenate(parts) if parts else np.zeros((0, model.num_features), np.float32))
    for i in indices:
        entry = dataset.entries[i]
        n = count_frames_cached(entry.path, dataset.frame_counts)
        rate = frame_rate(entry.path, fps)
        out.video_ids.append(entry.id)
        out.labels.append(entry.label)
        out.start_frame.append(0)
        out.end_frame.append(n)
        out.start_s.append(0.0)
        out.end_s.append(n / rate)
    return out


_SPAN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)\s*$")


def parse_span(text: str) -> tuple[float, str]:
    """``"2s"`` -> ``(2.0, "s")`` (seconds), ``"16f"`` -> ``(16.0, "f")`` (frames)."""
    m = _SPAN.match(text)
    if not m or float(m[1]) <= 0 or (m[2] == "f" and not float(m[1]).is_integer()):
        raise UsageError(f"'{text}': give a window or stride in seconds or frames with a suffix, e.g. 2s, 0.5s or 16f")
    return float(m[1]), m[2]


def _to_frames(span: tuple[float, str], rate: float) -> int:
    value, unit = span
    return max(1, round(value * rate)) if unit == "s" else int(value)


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """First frames of the windows of ``window`` frames every ``stride`` frames that fit in
    ``num_frames``; a video shorter than one window is one window from frame 0."""
    if num_frames <= window:
        return [0]
    return list(range(0, num_frames - window + 1, stride))


def _window_clips(path: Path, windows: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """The frames of each window (lists of indices), read in groups of at most
    ``MAX_FRAMES_PER_READ`` distinct frames (overlapping windows share their frames)."""
    i = 0
    while i < len(windows):
        wanted: set[int] = set(windows[i].tolist())
        j = i + 1
        while j < len(windows) and len(wanted | set(windows[j].tolist())) <= MAX_FRAMES_PER_READ:
            wanted |= set(windows[j].tolist())
            j += 1
        order = sorted(wanted)
        frames = dict(zip(order, read_frames(path, order)))
        for w in windows[i:j]:
            yield [frames[k] for k in w.tolist()]
        i = j


@torch.no_grad()
def extract_windows(model: nn.Module, path: str | Path, *, frames: int, size: int, short_side: int | None,
                    window: str | tuple[float, str], stride: str | tuple[float, str], batch_size: int = 16,
                    device: torch.device | str = "cpu", amp: str = "none", fps: float = FRAME_FOLDER_FPS,
                    video_id: str | None = None) -> Features:
    """One embedding per window of the video (or frame folder) ``path``.

    ``window`` and ``stride`` are ``"2s"`` / ``"16f"`` strings or :func:`parse_span` pairs;
    seconds become frames at the video's rate (``fps`` for frame folders). Each window is
    sampled as the evaluation protocol samples a video (``frames`` segment centres) and
    centre-cropped to ``size`` (short side ``short_side``).
    """
    model.eval()
    path = Path(path)
    window = parse_span(window) if isinstance(window, str) else window
    stride = parse_span(stride) if isinstance(stride, str) else stride
    n = count_frames(path)  # first: a missing or broken file is a DecodeError naming it
    rate = frame_rate(path, fps)
    w, s = _to_frames(window, rate), _to_frames(stride, rate)
    starts = window_starts(n, w, s)
    span = min(w, n)
    sampler = SegmentSampler(frames, train=False)
    windows = [sampler(span)[0] + start for start in starts]
    transform = EvalTransform(size, short_side)
    out = Features(features=np.zeros((0, model.num_features), np.float32))
    batch: list[torch.Tensor] = []

    def flush() -> None:
        out.features = np.concatenate([out.features, embed(model, torch.cat(batch), device, amp).numpy()])
        batch.clear()

    for clip in _window_clips(path, windows):
        batch.append(transform(clip))  # (1, C, T, size, size)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    for start in starts:
        out.video_ids.append(video_id or str(path))
        out.labels.append(-1)
        out.start_frame.append(start)
        out.end_frame.append(start + span)
        out.start_s.append(start / rate)
        out.end_s.append((start + span) / rate)
    return out


# ----------------------------------------------------------------------------- files


def save_features(path: str | Path, feats: Features, metadata: dict[str, str] | None = None) -> None:
    """Write ``feats`` to ``.npz`` (arrays ``video_ids``, ``labels``, ``start_frame``,
    ``end_frame``, ``start_s``, ``end_s``, ``features`` and ``meta_<key>`` strings; readable with
    ``allow_pickle=False``) or ``.parquet`` (one row per video or window, the embedding as a
    list column, ``metadata`` in the schema; needs pyarrow)."""
    path = Path(path)
    metadata = metadata or {}
    columns = {"video_ids": np.array(feats.video_ids, dtype=str), "labels": np.array(feats.labels, np.int64),
               "start_frame": np.array(feats.start_frame, np.int64), "end_frame": np.array(feats.end_frame, np.int64),
               "start_s": np.array(feats.start_s, np.float64), "end_s": np.array(feats.end_s, np.float64)}
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError(f"{path}: writing .parquet needs pyarrow (pip install pyarrow); or write .npz") from None
        table = pa.table({"video_id": columns["video_ids"].tolist(), **{k: v for k, v in columns.items() if k != "video_ids"},
                          "feature": list(feats.features.astype(np.float32))})
        pq.write_table(table.replace_schema_metadata({k: str(v) for k, v in metadata.items()}), path)
        return
    if path.suffix != ".npz":
        raise UsageError(f"{path}: the features file must end in .npz or .parquet")
    np.savez(path, **columns, features=feats.features.astype(np.float32),
             **{f"meta_{k}": np.array(str(v)) for k, v in metadata.items()})


def load_features(path: str | Path) -> tuple[Features, dict[str, str]]:
    """Read a file of :func:`save_features`: ``(features, metadata)``."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        cols = table.to_pydict()
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        return Features(cols["video_id"], cols["labels"], cols["start_frame"], cols["end_frame"], cols["start_s"],
                        cols["end_s"], np.array(cols["feature"], np.float32).reshape(len(cols["video_id"]), -1)), meta
    with np.load(path, allow_pickle=False) as z:
        meta = {k[5:]: str(z[k]) for k in z.files if k.startswith("meta_")}
        return Features(z["video_ids"].tolist(), z["labels"].tolist(), z["start_frame"].tolist(), z["end_frame"].tolist(),
                        z["start_s"].tolist(), z["end_s"].tolist(), z["features"]), meta
