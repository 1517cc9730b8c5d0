"""Evaluation: softmax scores per video and exact metrics (top-1, top-5, mean class accuracy).

Every video counts exactly once, also under torchrun: each rank scores its shard, then
(scores, labels, dataset indices) are gathered from all ranks, sorted by dataset index and
de-duplicated, so the padding a `DistributedSampler` may add never enters a metric.

Multi-view clips `(B, V, C, T, H, W)` (several clips x crops per video) are scored view by view
and averaged over the views as the evaluation protocol does it (`view_average`): the mean of the
views' softmax (gdn; MMAction2's TSM and I3D heads) or the softmax of their mean logits (the TSM
repository's test script; MMAction2's TSN head). Videos without a label (`label == -1`, e.g. a
test split) get scores but do not enter the metrics.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gdn.data.synthetic import reverse_pairs
from gdn.data.transforms import flip_label_map, model_input, swap_words
from gdn.errors import GdnError, UsageError
from gdn.ranks import get_rank, is_distributed

log = logging.getLogger(__name__)

__all__ = ["EvalResult", "ScoreFile", "ScoreFileError", "autocast_context", "compute_metrics",
           "confusion_figure", "evaluate", "fuse", "json_safe", "load_scores", "pair_metrics", "pair_order",
           "resolve_amp", "save_confusion_png", "save_per_class", "save_scores", "score_clips", "time_reverse_pairs",
           "view_average"]

AVERAGES = ("prob", "logits")


@dataclass
class EvalResult:
    """What `evaluate` returns. Accuracies are percentages; `nan` when no video has a label.

    indices, labels and scores are aligned and sorted by dataset index: `scores[i]` is the
    softmax of dataset item `indices[i]` (averaged over its views: `view_average`), whose label
    is `labels[i]`.
    """

    top1: float
    top5: float
    mean_class_accuracy: float
    num_videos: int                 # every scored video, labelled or not
    num_labelled: int               # videos that entered the metrics
    per_class: list[float]          # recall per class in percent; nan for classes without videos
    confusion: np.ndarray           # (K, K) int64, rows = true class, columns = predicted class
    indices: np.ndarray = field(repr=False)     # (N,) int64
    labels: np.ndarray = field(repr=False)      # (N,) int64, -1 = unknown
    scores: np.ndarray = field(repr=False)      # (N, K) float32 softmax scores

    def metrics(self) -> dict[str, float | int]:
        """The headline numbers as a flat dict (for logs, JSON and checkpoints)."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_accuracy": self.mean_class_accuracy,
            "num_videos": self.num_videos,
        }


def compute_metrics(scores: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> dict:
    """Exact metrics of scores `(N, K)` against labels `(N,)`; labels of -1 are skipped.

    Returns a dict with top1, top5 and mean_class_accuracy (percent), num_videos (N),
    num_labelled, per_class (list of percent, nan for absent classes) and confusion (K x K).
    Mean class accuracy is the mean, over the classes that have at least one video, of the
    per-class recall. Top-5 uses min(5, K) guesses. Ties are broken towards the lower class
    index (argsort is stable), so results are deterministic.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (N, K) and labels (N,); got {scores.shape} and {labels.shape}")
    k = num_classes if num_classes is not None else scores.shape[1]
    if scores.shape[1] != k:
        raise ValueError(f"scores have {scores.shape[1]} classes, expected {k}")
    if labels.size and labels.max(initial=-1) >= k:
        raise ValueError(f"label {int(labels.max())} out of range for {k} classes")

    known = labels >= 0
    s, y = scores[known], labels[known]
    n = int(known.sum())
    confusion = np.zeros((k, k), dtype=np.int64)
    if n == 0:
        nan = float("nan")
        return dict(top1=nan, top5=nan, mean_class_accuracy=nan, num_videos=int(labels.size),
                    num_labelled=0, per_class=[nan] * k, confusion=confusion)

    # Stable descending order: among equal scores the lower class index ranks first.
    order = np.argsort(-s, axis=1, kind="stable")
    pred = order[:, 0]
    top5 = (order[:, : min(5, k)] == y[:, None]).any(axis=1)
    np.add.at(confusion, (y, pred), 1)
    support = confusion.sum(axis=1)
    correct = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, 100.0 * correct / np.maximum(support, 1), np.nan)
    return dict(
        top1=100.0 * float((pred == y).mean()),
        top5=100.0 * float(top5.mean()),
        mean_class_accuracy=float(np.nanmean(per_class)),
        num_videos=int(labels.size),
        num_labelled=n,
        per_class=[float(v) for v in per_class],
        confusion=confusion,
    )


# Words and phrases whose swap names an action's time reverse: "Moving something up" / "... down",
# "Putting something into something" / "Taking something out of something". The first pair that
# names a word is its partner when all are swapped at once ("away from" -> "closer to").
TIME_OPPOSITES: tuple[tuple[str, str], ...] = (
    ("left", "right"), ("up", "down"), ("closer to", "away from"), ("towards", "away from"),
    ("closer", "away"), ("closer", "further"), ("covering", "uncovering"), ("opening", "closing"),
    ("folding", "unfolding"), ("clockwise", "counterclockwise"), ("clockwise", "anticlockwise"),
    ("putting", "taking"), ("into", "out of"), ("onto", "off"),
)


def time_reverse_pairs(classes: list[str], declared: Sequence[tuple[str, str]] = ()) -> dict[int, int]:
    """Class index -> index of its time reverse, each class in one pair at most.

    Taken first from `declared` (pairs of class names a dataset declares), then from the
    synthetic dataset's pairs (`gdn.data.synthetic.PAIRS`), then from the names: two classes
    whose names differ by the `TIME_OPPOSITES` (all swapped at once, or one pair of them).
    """
    index = {name: i for i, name in enumerate(classes)}
    out: dict[int, int] = {}

    def pair(a: int | None, b: int | None) -> None:
        if a is not None and b is not None and a != b and a not in out and b not in out:
            out[a], out[b] = b, a

    for a, b in declared:
        pair(index.get(a), index.get(b))
    for a, b in reverse_pairs(classes).items():
        pair(a, b)
    for i, name in enumerate(classes):
        for opposites in (TIME_OPPOSITES, *((o,) for o in TIME_OPPOSITES)):
            pair(i, index.get(swap_words(name, opposites)))
    return out


def pair_order(num_classes: int, pairs: dict[int, int]) -> list[int]:
    """The class indices in their order, each followed by its pair partner (`pairs`, as
    `time_reverse_pairs` returns them): a class sits next to its time reverse."""
    order: list[int] = []
    placed: set[int] = set()
    for i in range(num_classes):
        if i not in placed:
            group = [i, pairs[i]] if i in pairs else [i]
            order += group
            placed.update(group)
    return order


def pair_metrics(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Accuracies on the structure of the synthetic dataset, in percent.

    - pair_acc: over the videos of time-reversed pairs (`time_reverse_pairs`), how often the
      true class scores strictly above its time reverse (50 = chance for a model blind to frame
      order), whatever the other classes score;
    - mirror_top1 / mirror_pair_acc: top-1 and within-pair accuracy over the videos of the
      mirrored classes (those whose horizontal flip is another class: left/right).
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    reverse = time_reverse_pairs(classes)
    mirror = flip_label_map(classes)
    rows = np.arange(len(labels))

    def within_pair(sel: np.ndarray, other: dict[int, int]) -> float:
        y = labels[sel]
        partner = np.array([other[int(v)] for v in y], dtype=np.int64)
        return 100.0 * float(np.mean(scores[sel, y] > scores[sel, partner])) if len(sel) else float("nan")

    paired = rows[np.isin(labels, list(reverse))]
    mirrored = rows[np.array([v >= 0 and mirror[v] != v for v in labels], dtype=bool)]
    pred = scores.argmax(1)  # the first maximum: the tie rule of compute_metrics
    return {
        "pair_acc": within_pair(paired, reverse),
        "mirror_top1": 100.0 * float(np.mean(pred[mirrored] == labels[mirrored])) if len(mirrored) else float("nan"),
        "mirror_pair_acc": within_pair(mirrored, {i: m for i, m in enumerate(mirror)}),
        "num_paired": int(len(paired)),
        "num_mirrored": int(len(mirrored)),
    }


def resolve_amp(amp: str, device: torch.device) -> str:
    """The autocast mode that applies on `device`: "auto" is bf16 on CUDA; mixed precision
    runs on CUDA only, so anything is "none" elsewhere."""
    if amp not in ("auto", "bf16", "fp16", "none"):
        raise ValueError(f"amp must be one of auto, bf16, fp16, none; got '{amp}'")
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            log.info("amp=%s applies on CUDA only; running in fp32 on %s", amp, device)
        return "none"
    return "bf16" if amp == "auto" else amp


def autocast_context(device: torch.device, amp: str):
    """`torch.autocast` for `resolve_amp(amp, device)` (a no-op context for "none")."""
    amp = resolve_amp(amp, device)
    if amp == "none":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def view_average(protocol: str, model_name: str) -> str:
    """How ``protocol`` averages the views of a video, for a model of ``model_name``:

    - "prob": the mean of the views' softmax: gdn's own; MMAction2's TSM and I3D heads
      (``average_clips='prob'``);
    - "logits": the softmax of the views' mean logits: the TSM repository's ``test_models.py``
      (it averages logits; with ``--softmax`` it takes the softmax of that average, so its
      ranking and these scores are the same either way); MMAction2's TSN head (registry names
      ``tsn_*``), which averages the features of every frame of every view before its linear
      fc, that is, the mean of the logits.
    """
    if protocol == "tsm" or (protocol == "mmaction" and model_name.startswith("tsn")):
        return "logits"
    return "prob"


def score_clips(model: nn.Module, clip: torch.Tensor, device: torch.device, amp: str = "none",
                average: str = "prob") -> torch.Tensor:
    """Softmax scores (B, K) of clips (B, C, T, H, W), or of multi-view clips (B, V, C, T, H, W)
    averaged over the V views as ``average`` says ("prob": the mean of their softmax; "logits":
    the softmax of their mean logits; see `view_average`): uint8 pixels as the datasets give
    them (normalised on ``device``) or normalised float clips. The model must be in eval mode."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}; got {average!r}")
    clip = model_input(clip, device)
    views = 1
    if clip.dim() == 6:  # (B, V, C, T, H, W) -> (B*V, C, T, H, W): every view is a clip
        views = clip.shape[1]
        clip = clip.flatten(0, 1)
    with autocast_context(device, amp):
        logits = model(clip)
    logits = logits.float().view(-1, views, logits.shape[-1])  # (B, V, K)
    if average == "logits":
        return F.softmax(logits.mean(dim=1), dim=1)
    return F.softmax(logits, dim=2).mean(dim=1)


def _gather(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Concatenate per-rank arrays from every rank (shards have different lengths)."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, arrays)
    out = []
    for i in range(len(arrays)):
        parts = [g[i] for g in gathered if len(g[i])] or [arrays[i]]  # skip empty shards
        out.append(np.concatenate(parts))
    return tuple(out)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device | str,
    *,
    amp: str = "none",
    average: str = "prob",
    distributed: bool = False,
    num_classes: int | None = None,
    desc: str = "eval",
) -> EvalResult:
    """Score every video of `loader` and compute exact metrics.

    Args:
        model: (B, C, T, H, W) -> logits (B, K). Put in eval mode here; its previous mode is
            restored on return (the training loop calls this between epochs).
        loader: yields dicts with "clip" (B, C, T, H, W) or (B, V, C, T, H, W), "label" (B,)
            and "index" (B,) (the dataset index of each video).
        device: where the model runs.
        amp: "none" | "bf16" | "fp16" | "auto" (bf16 on CUDA).
        average: how the views of a multi-view clip are averaged: "prob" or "logits"
            (`view_average` gives the one of an evaluation protocol).
        distributed: gather the shards of all ranks (torch.distributed must be initialised);
            every rank returns the same full result.
        num_classes: K, checked against the model's output; inferred from it when None.
    """
    device = torch.device(device)
    distributed = distributed and is_distributed()
    rank = get_rank() if distributed else 0
    was_training = model.training
    model.eval()

    all_scores, all_labels, all_indices = [], [], []
    show = rank == 0 and sys.stderr.isatty()
    for batch in tqdm(loader, desc=desc, disable=not show, leave=False, dynamic_ncols=True):
        probs = score_clips(model, batch["clip"], device, amp, average)
        all_scores.append(probs.cpu().numpy())
        all_labels.append(torch.as_tensor(batch["label"]).view(-1).cpu().numpy())
        all_indices.append(torch.as_tensor(batch["index"]).view(-1).cpu().numpy())
    model.train(was_training)

    # A rank may have no batches (more ranks than videos): its empty shard still joins the gather.
    scores = np.concatenate(all_scores) if all_scores else np.zeros((0, num_classes or 0), np.float32)
    labels = np.concatenate(all_labels).astype(np.int64) if all_labels else np.zeros(0, np.int64)
    indices = np.concatenate(all_indices).astype(np.int64) if all_indices else np.zeros(0, np.int64)
    if distributed:
        scores, labels, indices = _gather((scores, labels, indices))
    if len(scores) == 0 and num_classes is None:
        raise ValueError("the loader yielded no videos and num_classes was not given")
    k = scores.shape[1] if len(scores) else num_classes
    if num_classes is not None and k != num_classes:
        raise ValueError(f"the model outputs {k} classes but num_classes={num_classes}")
    # Sort by dataset index and keep each video once: padded duplicates never count.
    indices, first = np.unique(indices, return_index=True)
    scores, labels = scores[first].astype(np.float32), labels[first]

    m = compute_metrics(scores, labels, k)
    if m["num_labelled"]:
        log.debug("%s: top1 %.2f top5 %.2f mean class %.2f over %d videos", desc, m["top1"], m["top5"],
                  m["mean_class_accuracy"], m["num_labelled"])
    return EvalResult(
        top1=m["top1"], top5=m["top5"], mean_class_accuracy=m["mean_class_accuracy"],
        num_videos=m["num_videos"], num_labelled=m["num_labelled"], per_class=m["per_class"],
        confusion=m["confusion"], indices=indices, labels=labels, scores=scores,
    )


# ----------------------------------------------------------------------------- score files
#
# `gdn test --scores FILE` writes, and `gdn ensemble` reads, the softmax scores of every video:
#   .npz: arrays video_ids (str), labels (int64, -1 unknown), scores (float32 N x K), classes (str)
#         read with allow_pickle=False;
#   .pt:  a dict of the same keys (video_ids and classes as lists of str, labels and scores as
#         tensors) read with torch.load(weights_only=True).
# Neither format can run code when loaded.


class ScoreFileError(GdnError, ValueError):
    """A score file that cannot be used; the message names the file and what to do."""


@dataclass
class ScoreFile:
    video_ids: list[str]
    labels: np.ndarray      # (N,) int64, -1 unknown
    scores: np.ndarray      # (N, K) float32
    classes: list[str]      # K names


def save_scores(path, scores: ScoreFile) -> None:
    """Write `scores` as .npz or .pt (chosen by the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(scores.labels, dtype=np.int64)
    values = np.asarray(scores.scores, dtype=np.float32)
    if path.suffix == ".npz":
        # np.savez appends .npz to other names; write through a handle to keep `path` exactly.
        with open(path, "wb") as f:
            np.savez(f, video_ids=np.array([str(v) for v in scores.video_ids], dtype=str),
                     labels=labels, scores=values, classes=np.array(list(scores.classes), dtype=str))
    elif path.suffix == ".pt":
        torch.save({"video_ids": [str(v) for v in scores.video_ids], "labels": torch.from_numpy(labels),
                    "scores": torch.from_numpy(values), "classes": [str(c) for c in scores.classes]}, path)
    else:
        raise ScoreFileError(f"{path}: score files end in .npz or .pt; rename the output")


def load_scores(path) -> ScoreFile:
    """Read a file written by `save_scores`, safely; ScoreFileError names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ScoreFileError(f"{path}: score file not found; write one with `gdn test CKPT --scores {path}`")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        elif path.suffix == ".pt":
            data = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ScoreFileError(f"{path}: not a score file (expected .npz or .pt from `gdn test --scores`)")
    except ScoreFileError:
        raise
    except Exception as e:  # zip/pickle/unsafe-content errors all mean "not a score file"
        raise ScoreFileError(f"{path}: cannot be read as a score file ({type(e).__name__}: {e}); "
                             "re-create it with `gdn test CKPT --scores FILE`") from e
    if not isinstance(data, dict):
        raise ScoreFileError(f"{path}: holds a {type(data).__name__}, not a score dict; re-create it with "
                             "`gdn test --scores`")
    missing = [k for k in ("video_ids", "labels", "scores", "classes") if k not in data]
    if missing:
        raise ScoreFileError(f"{path}: missing {', '.join(missing)}; re-create it with `gdn test --scores`")
    as_np = lambda v: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)  # noqa: E731
    out = ScoreFile(video_ids=[str(v) for v in as_np(data["video_ids"]).tolist()],
                    labels=as_np(data["labels"]).astype(np.int64),
                    scores=as_np(data["scores"]).astype(np.float32),
                    classes=[str(c) for c in as_np(data["classes"]).tolist()])
    n = len(out.video_ids)
    if out.scores.ndim != 2 or out.scores.shape != (n, len(out.classes)) or out.labels.shape != (n,):
        raise ScoreFileError(f"{path}: inconsistent shapes: {n} video ids, labels {out.labels.shape}, "
                             f"scores {out.scores.shape}, {len(out.classes)} classes")
    return out


def fuse(files: list[ScoreFile], paths: list[str], weights: list[float] | None = None) -> ScoreFile:
    """Weighted average of softmax scores, aligned by video id to the first file.

    Raises ScoreFileError naming the offending file when a file covers other videos, gives a
    video another label, or has other class names.
    """
    if weights is None:
        weights = [1.0] * len(files)
    if len(weights) != len(files):
        raise UsageError(f"--weights: got {len(weights)} weights for {len(files)} score files; give one per file")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UsageError(f"--weights must be >= 0 with a positive sum, got {weights}")
    ref, ref_path = files[0], paths[0]
    position = {vid: i for i, vid in enumerate(ref.video_ids)}
    if len(position) != len(ref.video_ids):
        raise ScoreFileError(f"{ref_path}: repeated video ids; re-create it with `gdn test --scores`")
    total = np.zeros_like(ref.scores, dtype=np.float64)
    for f, path, w in zip(files, paths, weights):
        if f.classes != ref.classes:
            diff = next((i for i, (a, b) in enumerate(zip(f.classes, ref.classes)) if a != b), None)
            where = (f"class {diff} is '{f.classes[diff]}' there but '{ref.classes[diff]}' in {ref_path}"
                     if diff is not None else f"{len(f.classes)} classes vs {len(ref.classes)} in {ref_path}")
            raise ScoreFileError(f"{path}: class names differ ({where}); ensemble models trained on the same labels")
        ids = set(f.video_ids)
        missing = [v for v in ref.video_ids if v not in ids]
        extra = [v for v in f.video_ids if v not in position]
        if missing or extra or len(ids) != len(f.video_ids):
            raise ScoreFileError(
                f"{path}: video ids do not match {ref_path} ({len(missing)} missing, e.g. {missing[:3]}; "
                f"{len(extra)} extra, e.g. {extra[:3]}; {len(f.video_ids) - len(ids)} repeated); "
                "score all models on the same split"
            )
        order = np.array([position[v] for v in f.video_ids])  # row i of f is video order[i] of ref
        if not np.array_equal(ref.labels[order], f.labels):
            bad = int(np.flatnonzero(ref.labels[order] != f.labels)[0])
            raise ScoreFileError(
                f"{path}: video '{f.video_ids[bad]}' has label {int(f.labels[bad])} there but "
                f"{int(ref.labels[order][bad])} in {ref_path}; score all models on the same annotations"
            )
        total[order] += w * f.scores
    return ScoreFile(video_ids=list(ref.video_ids), labels=ref.labels.copy(),
                     scores=(total / sum(weights)).astype(np.float32), classes=list(ref.classes))



# ----------------------------------------------------------------------------- reports


def save_per_class(result: EvalResult, classes: list[str], csv_path, json_path=None) -> None:
    """Per-class recall as CSV (`index,class,videos,correct,accuracy`) and optionally JSON."""
    import csv
    import json

    support = result.confusion.sum(axis=1)
    correct = np.diag(result.confusion)
    rows = [{"index": i, "class": name, "videos": int(support[i]), "correct": int(correct[i]),
             "accuracy": None if math.isnan(result.per_class[i]) else round(result.per_class[i], 4)}
            for i, name in enumerate(classes)]
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["index", "class", "videos", "correct", "accuracy"])
        writer.writeheader()
        writer.writerows({**r, "accuracy": "" if r["accuracy"] is None else r["accuracy"]} for r in rows)
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump({"metrics": json_safe(result.metrics()), "per_class": rows}, f, indent=1)


def save_confusion_png(confusion: np.ndarray, classes: list[str], path, title: str = "") -> None:
    """`confusion_figure` saved as a PNG."""
    import matplotlib.pyplot as plt

    fig = confusion_figure(confusion, classes, title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_figure(confusion: np.ndarray, classes: list[str], title: str = ""):
    """Row-normalised confusion matrix (true class down, predicted across), a matplotlib Figure.

    The classes are ordered so that each sits next to its time reverse (`time_reverse_pairs`),
    and each pair's 2x2 block is outlined: a model blind to frame order (TSN) shows its mass on
    both cells of a block row, one that sees the order on the diagonal. Up to 40 classes the axes carry the full names, wrapped, with the number of
    videos of each true class; up to 30 each cell shows its percentage of the true class.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    k = len(classes)
    pairs = time_reverse_pairs(classes)
    order = pair_order(k, pairs)
    cm = np.asarray(confusion)[np.ix_(order, order)]
    support = cm.sum(axis=1)
    norm = np.divide(cm, np.maximum(support, 1)[:, None], dtype=np.float64)
    named, written = k <= 40, k <= 30
    cell = 1.0 if k <= 10 else 0.55 if written else 0.3  # inches
    label_space = 2.6 if named else 0.5
    side = min(cell * k, 30)
    fig, ax = plt.subplots(figsize=(side + label_space + 1.5, side + label_space + 0.6))
    im = ax.imshow(100 * norm, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true class's videos")
    for i, (a, b) in enumerate(zip(order, order[1:])):
        if pairs.get(a) == b:  # a pair's 2x2 block, outlined
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 2, 2, fill=False, edgecolor="darkorange", linewidth=2))
    if written:
        size = 10 if k <= 10 else 7
        for r in range(k):
            for c in range(k):
                if support[r]:
                    ax.text(c, r, f"{100 * norm[r, c]:.0f}", ha="center", va="center", fontsize=size,
                            color="white" if norm[r, c] > 0.5 else "black" if cm[r, c] else "0.6")
    if named:
        width = 24 if k <= 10 else 40
        names = [textwrap.fill(classes[i], width) for i in order]
        ax.set_xticks(range(k), names, rotation=90 if k > 10 else 45, ha="center" if k > 10 else "right",
                      rotation_mode="anchor" if k <= 10 else "default", fontsize=8)
        ax.set_yticks(range(k), [f"{name} ({n})" for name, n in zip(names, support)], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (videos)")
    subtitle = "outlined: an action and its time reverse" if pairs else ""
    ax.set_title("\n".join(t for t in (title or "confusion matrix", subtitle) if t), fontsize=11)
    fig.tight_layout()
    return fig


def json_safe(value):
    """NaN -> None (JSON has no NaN), numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
