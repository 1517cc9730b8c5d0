"""Video embeddings: the pooled pre-classifier features of a trained model, for retrieval,
clustering and temporal localisation.

The embedding of a clip is :func:`embed`: ``model.forward_features`` gives one ``D``-vector per
frame (``(B, T, D)``, after the backbone's global spatial pooling), averaged over the ``T`` frames:
the TSN consensus taken before the classifier instead of after it (the logits are ``fc`` of it, up
to dropout). A video gets the embedding of the clip the evaluation protocol takes (the
checkpoint's frames and size, one centre clip and crop: :func:`extract_features`), or one per
window of a long video (:func:`extract_windows`: the windows of `gdn predict --window`, from one
streaming decode, `gdn.data.windows`).

Rows are saved with the video id, the label (-1: unknown) and where they lie in the video, in
frames and in seconds (:func:`save_features`, ``.npz``; ``.parquet`` when pyarrow is installed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gdn.data.datasets import VideoDataset
from gdn.data.decode import count_frames_cached
from gdn.data.loader import build_loader
from gdn.data.transforms import model_input
from gdn.data.windows import FOLDER_RATE, Span, frame_rate, read_windows
from gdn.engine.evaluate import autocast_context
from gdn.engine.predict import Predictor
from gdn.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["Features", "embed", "extract_features", "extract_windows", "save_features",
           "load_features"]


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

    @classmethod
    def join(cls, parts: list[Features]) -> Features:
        """The rows of ``parts`` in order (their embeddings concatenated once)."""
        if not parts:
            return cls()
        out = cls(features=np.concatenate([p.features for p in parts]))
        for name in ("video_ids", "labels", "start_frame", "end_frame", "start_s", "end_s"):
            getattr(out, name).extend(x for p in parts for x in getattr(p, name))
        return out

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


def extract_features(model: nn.Module, dataset: VideoDataset, *, batch_size: int = 16, workers: int = 0,
                     device: torch.device | str = "cpu", amp: str = "none", fps: float = float(FOLDER_RATE)) -> Features:
    """One embedding per video of an evaluation ``dataset`` (its sampling, views and crops), in
    dataset order, spanning the whole video. A file that cannot be read raises DecodeError."""
    model.eval()
    if workers > 0:
        dataset.count_video_frames()  # here, once: workers' counts never reach this process
    loader = build_loader(dataset, batch_size, train=False, workers=workers)
    parts, indices = [], []
    for batch in loader:
        parts.append(embed(model, batch["clip"], device, amp).numpy())
        indices.extend(int(i) for i in batch["index"])
    out = Features(features=np.concatenate(parts) if parts else np.zeros((0, model.num_features), np.float32))
    for i in indices:
        entry = dataset.entries[i]
        n = count_frames_cached(entry.path, dataset.frame_counts)
        rate = float(frame_rate(entry.path, fps))
        out.video_ids.append(entry.id)
        out.labels.append(entry.label)
        out.start_frame.append(0)
        out.end_frame.append(n)
        out.start_s.append(0.0)
        out.end_s.append(n / rate)
    return out


@torch.no_grad()
def extract_windows(predictor: Predictor, path: str | Path, window: Span | str, stride: Span | str | None = None,
                    *, batch_size: int = 16, fps: float = float(FOLDER_RATE), video_id: str | None = None) -> Features:
    """One embedding per window of the video (or frame folder) ``path``, with the checkpoint of
    ``predictor``: the windows, their clips and the last partial window are those of
    `gdn.data.windows.read_windows` (one streaming decode), each clip transformed as
    `Predictor.views` does for `gdn predict --window`. ``window`` and ``stride`` are `Span`s or
    their text (``"2s"``, ``"16f"``); ``fps`` is the frame rate of a frame folder."""
    out = Features()
    batch: list[torch.Tensor] = []
    rows: list[np.ndarray] = [np.zeros((0, predictor.model.num_features), np.float32)]

    def flush() -> None:
        rows.append(embed(predictor.model, torch.stack(batch), predictor.device, predictor.amp).numpy())
        batch.clear()

    for w, clips in read_windows(path, window, stride, predictor.sampler, folder_rate=fps):
        batch.append(predictor.views(clips))  # (V, C, T, S, S)
        if len(batch) == batch_size:
            flush()
        out.video_ids.append(video_id or str(path))
        out.labels.append(-1)
        out.start_frame.append(w.start)
        out.end_frame.append(w.end)
        out.start_s.append(w.start_time)
        out.end_s.append(w.end_time)
    if batch:
        flush()
    out.features = np.concatenate(rows)
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
