"""The training loop: `train(cfg)` reads top to bottom, like nanoGPT's.

The recipe follows the starting point (`train.recipe`, `gdn.config.RECIPES`; the log says which):
from pretrained weights the paper's (section 3.2): SGD momentum 0.9, lr 0.02 at batch 48 scaled
linearly to the effective batch, weight decay 5e-4 (none on BatchNorm parameters and biases),
40 epochs, lr x0.1 at epochs 20 and 30, dropout 0.5, gradient norm clipped at 20; from random
weights the measured "scratch" recipe (lr 0.05 at batch 16, cosine, 1 warm-up epoch, weight decay
1e-4, dropout 0.2). Keys the user set always win over the recipe.

One process per device; under torchrun the model is wrapped in DistributedDataParallel.
Everything a run produces goes to `cfg.out`:

    config.yaml     the resolved config (recipe included)
    split-*.txt     a folder dataset's train/val split, when the run made it (data.val_fraction)
    last.pt         after every epoch (and on SIGTERM/SIGINT, mid-epoch); last.prev.pt the one before
    best.pt         the checkpoint with the best validation top-1
    metrics.jsonl   one JSON object per epoch
    curves.png      loss and accuracy curves, drawn at the end
    tb/             TensorBoard events, when tensorboard is installed

A folder that already holds a run (a checkpoint or metrics) is never overwritten silently: pass
`resume="auto"` to continue it or `overwrite=True` to start again in it. A start that fails
(bad weights, bad data) removes what it created.

Resuming (`resume="auto"` or a path) continues exactly: model, optimizer, loss scaler, epoch,
batch within the epoch and every random generator are restored, and the data loader skips the
batches already seen, so the parameters equal those of an uninterrupted run. Epochs are
numbered from 1 in every message ("epoch 3, step 2" is the third epoch after two batches).
"""

from __future__ import annotations

import contextlib
import gc
import difflib
import json
import logging
import math
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from gdn.config import RECIPES, Config, ConfigError, TrainConfig
from gdn.data.annotations import folder_has_splits, read_folder, split_by_class, write_split_list
from gdn.data.augment import mix_batch
from gdn.data.datasets import TooManyBadSamples, VideoDataset, build_dataset, check_bad_fraction
from gdn.data.loader import build_loader, class_balanced_weights, close_loader, set_epoch
from gdn.data.transforms import model_input
from gdn.engine import distributed as D
from gdn.engine.checkpoint import (
    BEST,
    LAST,
    LAST_PREV,
    CheckpointError,
    clean_state_dict,
    find_resume_checkpoint,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
    versions,
)
from gdn.engine.evaluate import autocast_context, evaluate, resolve_amp
from gdn.errors import GdnError
from gdn.models import create_model
from gdn.models.fast import to_channels_last
from gdn.models.layers import ClipShapeError
from gdn.models.weights import load_weights
from gdn.models.registry import model_options

log = logging.getLogger(__name__)

# What a run writes into its folder; a folder holding one of the first three holds a run.
# (A folder dataset's split-*.txt stay: the config of the run being replaced may point at them.)
RUN_FILES = (LAST, BEST, "metrics.jsonl", LAST_PREV, "config.yaml", "curves.png", "tb")


class NonFiniteLossError(GdnError, RuntimeError):
    """The loss became NaN or infinite; raised before the optimizer step, so no weight is spoiled."""

    exit_code = 1


class TrainingInterrupted(GdnError, RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was saved at the next step boundary (or, after a
    second Ctrl-C, the previous checkpoint was left as it was).

    `exit_code` is 128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell reports.
    """

    kind = "stopped"

    def __init__(self, signum: int, message: str):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message)


# ---------------------------------------------------------------------------- building blocks
def check_model(cfg: Config) -> None:
    """Build `cfg.model` on the meta device (no memory, no weights) and run it on a clip of
    `data.frames` x `data.size`, so that a bad option or a clip shape the model cannot take
    (I3D's frame multiples, say) fails in milliseconds, before any data is read."""
    options = cfg.model.options
    valid = model_options(cfg.model.name)
    unknown = [k for k in options if k not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"model.options.{unknown[0]}: '{cfg.model.name}' has no option '{unknown[0]}'{hint}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    try:
        # fork_rng: building the check model must not draw from the generator the real one uses.
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = create_model(cfg.model.name, num_classes=2, dropout=cfg.model.dropout, **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.options of '{cfg.model.name}' ({options}): {e}") from None
    d = cfg.data
    if why := clip_shape_problem(model, d.frames, d.size):
        raise ConfigError(f"data.frames / data.size ({d.frames} x {d.size}) for '{cfg.model.name}': {why}")
    if cfg.train.freeze_stages >= 0:
        freeze_stages(model, cfg.train.freeze_stages)  # a count the model does not have: an error now


def clip_shape_problem(model: nn.Module, frames: int, size: int) -> str | None:
    """Why `model` (built on the meta device) cannot take clips of frames x size x size (its
    `ClipShapeError`), or None."""
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, 3, frames, size, size, device="meta"))
    except ClipShapeError as e:
        return str(e)
    return None


def split_folder_dataset(cfg: Config) -> None:
    """A folder dataset with neither train/val folders nor list files: split it per class
    (`data.val_fraction` held out, seeded by `data.split_seed`), write the two lists into the run
    folder and point `data.train_list` / `data.val_list` at them, so that the run's config.yaml
    (and `gdn test`, resume) read the same split again. Rank 0 writes; every rank reads the files."""
    d = cfg.data
    if d.dataset != "folder" or folder_has_splits(d.root) or (d.train_list and d.val_list):
        return
    if d.train_list or d.val_list:
        raise ConfigError("a folder dataset split by list files needs both data.train_list and data.val_list")
    out = Path(cfg.out)
    paths = (out / "split-train.txt").resolve(), (out / "split-val.txt").resolve()
    if D.is_main():
        ann = read_folder(d.root, "all")
        ann.raise_for_problems()
        train_entries, val_entries = split_by_class(ann, d.val_fraction, d.split_seed)
        out.mkdir(parents=True, exist_ok=True)
        write_split_list(paths[0], train_entries)
        write_split_list(paths[1], val_entries)
        log.info("split %s per class: %d train / %d val videos (val_fraction %g, split_seed %d), written to %s and %s",
                 d.root, len(train_entries), len(val_entries), d.val_fraction, d.split_seed, *paths)
    D.barrier()
    d.train_list, d.val_list = str(paths[0]), str(paths[1])


def build_datasets(cfg: Config) -> tuple[VideoDataset, VideoDataset]:
    """The training and validation datasets described by `cfg.data` (same classes in both).
    Reads the annotations only (and splits an unsplit folder dataset, `split_folder_dataset`);
    `count_video_frames` is left to the caller."""
    d = cfg.data
    split_folder_dataset(cfg)
    # Frame counts of webm files (which store none) are read from / kept in this folder.
    cache_dir = d.cache_dir or cfg.out
    common = dict(frames=d.frames, size=d.size, short_side=d.short_side, sampling=d.sampling,
                  protocol=d.protocol, label_order=d.label_order, classes_file=d.classes_file,
                  seed=cfg.train.seed, cache_dir=cache_dir)
    train_ds = build_dataset(d.dataset, d.root, d.train_split, train=True, flip=d.flip,
                             list_file=d.train_list, max_bad_fraction=d.max_bad_fraction,
                             randaugment=d.randaugment, randaugment_magnitude=d.randaugment_magnitude, **common)
    val_ds = build_dataset(d.dataset, d.root, d.val_split, train=False, list_file=d.val_list, **common)
    if list(val_ds.classes) != list(train_ds.classes):
        raise ConfigError(
            f"the {d.train_split} and {d.val_split} splits under {d.root} list different classes "
            f"({len(train_ds.classes)} vs {len(val_ds.classes)}); check data.classes_file / label_order"
        )
    return train_ds, val_ds


def build_model(cfg: Config, num_classes: int, fresh: bool) -> nn.Module:
    """`cfg.model` with `num_classes` outputs; a `fresh` run (not a resume) also loads its
    initial weights (ImageNet `pretrained` or a checkpoint to fine-tune, `init_from`)."""
    m = cfg.model
    model = create_model(m.name, num_classes=num_classes, dropout=m.dropout,
                         pretrained=m.pretrained if fresh else None, **m.options)
    if fresh and m.init_from:
        log.info("%s", load_weights(model, m.init_from, reset_head=m.reset_head))
    return model


def param_groups(model: nn.Module, weight_decay: float, fc_lr_mult: float) -> list[dict]:
    """SGD parameter groups: no weight decay on BatchNorm parameters and biases (anything 1-D),
    and the classifier `fc` at `fc_lr_mult` times the lr (5 in the TSM recipe).

    Each group carries `lr_mult`; the loop sets `lr = base_lr * schedule * lr_mult`.
    Frozen parameters (partial BN) are left out.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_fc = name.startswith("fc.")
        decay = p.ndim > 1
        groups.setdefault((is_fc, decay), []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0,
         "lr_mult": fc_lr_mult if is_fc else 1.0}
        for (is_fc, decay), params in sorted(groups.items())
    ]


def freeze_stages(model: nn.Module, stages: int) -> list[nn.Module]:
    """Fine-tuning: freeze the stem (`conv1`, `bn1`) and the first `stages` stages (`layer1`, ...).

    Their parameters get no gradient (and stay out of the optimizer) and their BatchNorms stay in
    eval mode, so the running statistics of the pretrained weights are kept too (mmaction2's
    `frozen_stages`). Returns those BatchNorms, which `train_mode` keeps in eval mode.
    """
    if not callable(getattr(model, "stages", None)):
        raise ConfigError(f"train.freeze_stages={stages}: {type(model).__name__} has no ResNet stages to freeze; "
                          "leave train.freeze_stages at -1")
    all_stages = model.stages()
    if stages > len(all_stages):
        raise ConfigError(f"train.freeze_stages={stages}: the model has {len(all_stages)} stages")
    frozen = [model.conv1, model.bn1, *all_stages[:stages]]
    for module in frozen:
        module.requires_grad_(False)
    return [bn for module in frozen for bn in module.modules() if isinstance(bn, nn.modules.batchnorm._BatchNorm)]


def frozen_batchnorms(model: nn.Module, t: TrainConfig) -> list[nn.Module]:
    """Apply `train.freeze_stages` and `train.partial_bn`; the BatchNorms that must stay in eval mode."""
    frozen = freeze_stages(model, t.freeze_stages) if t.freeze_stages >= 0 else []
    if t.partial_bn:
        frozen += [bn for bn in partial_bn(model) if not any(bn is f for f in frozen)]
    return frozen


def classification_loss(logits: torch.Tensor, target: torch.Tensor,
                        class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of float `logits` (B, K) against labels (B,) or soft targets (B, K) (Mixup,
    CutMix). With `class_weight` (K,) a sample counts with its class's weight (for a soft target,
    the mix of its classes' weights), normalised by the summed weights as `F.cross_entropy` does,
    so that one-hot targets give exactly `F.cross_entropy(logits, labels, weight=class_weight)`."""
    if target.dim() == 1:
        return F.cross_entropy(logits, target, weight=class_weight)
    per_sample = -(target * F.log_softmax(logits, dim=1)).sum(1)
    if class_weight is None:
        return per_sample.mean()
    w = target @ class_weight
    return (w * per_sample).sum() / w.sum()


def class_balance(labels: list[int], classes: list[str], balance: str) -> np.ndarray:
    """Log how unequal the training classes are and what `train.balance` does about it; returns
    the per-class loss weights `N / (K * n_c)` (1 on average over the samples)."""
    counts = np.bincount(labels, minlength=len(classes))
    lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
    spread = (f"{counts[lo]} for every class" if counts[lo] == counts[hi]
              else f"{counts[lo]} for '{classes[lo]}' to {counts[hi]} for '{classes[hi]}'")
    log.info("class balance: %s (training videos per class: %s)",
             {"none": "none", "sampler": "class-balanced sampler", "loss": "class-weighted loss"}[balance], spread)
    if balance == "none" and counts[lo] * 2 < counts[hi]:
        log.info("the classes differ more than 2x in size; --balance sampler or --balance loss evens them out")
    return np.where(counts > 0, len(labels) / (len(classes) * np.maximum(counts, 1)), 0.0)


def partial_bn(model: nn.Module) -> list[nn.Module]:
    """Freeze every BatchNorm but the first (TSN's partial BN): their statistics and affine
    parameters stay at their (pretrained) values. Returns the frozen modules, which
    `train_mode` keeps in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns[1:]:
        bn.requires_grad_(False)
    return bns[1:]


def train_mode(model: nn.Module, frozen_bn: list[nn.Module]) -> None:
    model.train()
    for bn in frozen_bn:
        bn.eval()


def log_recipe(cfg: Config) -> None:
    """One line: the resolved recipe (`Config.resolve_recipe`), why, its values, and the keys set otherwise."""
    m, t = cfg.model, cfg.train
    start = (f"init_from {m.init_from}" if m.init_from else f"pretrained {m.pretrained}" if m.pretrained
             else "random weights")

    def value(key: str):
        section, name = key.split(".")
        return getattr(getattr(cfg, section), name)

    recipe = RECIPES[t.recipe]
    kept = [f"{k}={value(k)}" for k in recipe if value(k) != recipe[k]]
    log.info("recipe: %s (the model starts from %s): %s%s", t.recipe, start,
             ", ".join(f"{k.split('.')[1]} {value(k)}" for k in (*recipe, "train.fc_lr_mult")),
             f"; set otherwise: {', '.join(kept)}" if kept else "")


def lr_factor(cfg: Config, epoch_progress: float) -> float:
    """The schedule as a multiple of the base lr, at `epoch_progress` epochs (fractional).

    Evaluated every optimizer step from the position in training alone, so a resumed run gets
    the same lr at the same step without any scheduler state.
    """
    t = cfg.train
    if t.warmup_epochs > 0 and epoch_progress < t.warmup_epochs:
        return epoch_progress / t.warmup_epochs  # linear warm-up from 0
    if t.schedule == "cosine":
        span = max(t.epochs - t.warmup_epochs, 1e-8)
        return 0.5 * (1.0 + math.cos(math.pi * min((epoch_progress - t.warmup_epochs) / span, 1.0)))
    return t.lr_gamma ** sum(epoch_progress >= m for m in t.lr_steps)  # step decay at epoch boundaries


class StopRequest:
    """SIGTERM/SIGINT turned into a request (`signum`) honoured at the next optimizer step.

    A second Ctrl-C stops at once (KeyboardInterrupt) unless the stop is already `settled` (its
    checkpoint is being written, or the run is on its way out), when further signals are
    ignored; checkpoints are written atomically, so an abort anywhere leaves the previous one
    intact. Data-loader workers ignore SIGINT (`gdn.data.loader.init_worker`): only this process
    decides how to stop. `train` keeps the handler installed until the loaders' workers have
    shut down, so that a Ctrl-C during the exit cannot turn the stop into a traceback.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.settled = False

    def __call__(self, signum: int, frame) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT and not self.settled:
                raise KeyboardInterrupt
            return
        log.warning("%s received: saving a checkpoint at the next step, then stopping "
                    "(Ctrl-C again: stop now, keeping the previous checkpoint)", signal.Signals(signum).name)
        self.signum = signum

    @contextlib.contextmanager
    def installed(self):
        """Install the handler for SIGTERM and SIGINT (main thread only; a no-op elsewhere).
        Nesting is harmless: the inner exit restores the outer installation."""
        previous = {}
        try:
            for s in (signal.SIGTERM, signal.SIGINT):
                previous[s] = signal.signal(s, self)
        except ValueError:  # not the main thread
            pass
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def read_history(path: Path, upto_epoch: int) -> list[dict]:
    """The metrics of epochs 1..upto_epoch from an earlier run's metrics.jsonl (for resume)."""
    if not path.is_file():
        return []
    history = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: unreadable metrics line dropped", path, n)
            continue
        if record.get("epoch", 0) <= upto_epoch:
            history.append(record)
    return history


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss, accuracy and lr per epoch, as a PNG (matplotlib, Agg backend)."""
    import matplotlib  # here, not at the top: only the end of a run draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h["loss"] for h in history], marker="o")
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].plot(epochs, [h["train_top1"] for h in history], marker="o", label="train top-1")
    val = [(h["epoch"], h["val_top1"]) for h in history if h.get("val_top1") is not None]
    if val:
        axes[1].plot(*zip(*val), marker="o", label="val top-1")
    axes[1].set(title="accuracy (%)", xlabel="epoch")
    axes[1].legend()
    lrs = [h["lr"] for h in history]
    axes[2].plot(epochs, lrs, marker="o")
    axes[2].set(title="learning rate (end of epoch)", xlabel="epoch",
                yscale="log" if min(lrs) > 0 else "linear")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency
    except ImportError:
        return None
    return SummaryWriter(str(folder))


# ---------------------------------------------------------------------------- run folder and resume
def holds_run(out: Path) -> bool:
    """`out` holds an earlier run: a checkpoint or metrics that a fresh start would replace."""
    metrics = out / "metrics.jsonl"
    return (out / LAST).exists() or (out / BEST).exists() or (metrics.is_file() and metrics.stat().st_size > 0)


def prepare_run_folder(out: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to start a fresh run over an earlier one unless told to; with `overwrite`, remove
    the earlier run's files (only those a run writes) first."""
    if resume is not None or not holds_run(out):
        return
    if not overwrite:
        raise ConfigError(
            f"{out} already holds a run (checkpoints or metrics); continue it with --resume auto, "
            f"start again in it with --overwrite, or choose another --out"
        )
    log.warning("--overwrite: removing the earlier run in %s", out)
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def find_checkpoint(out: Path, resume: str | None) -> tuple[Path, dict] | tuple[None, None]:
    """The checkpoint to continue from: none for a fresh run, the newest readable one of `out`
    for "auto" (none if the folder has none), or the one at the path `resume`."""
    if resume is None:
        return None, None
    if resume == "auto":
        found = find_resume_checkpoint(out)
        if found is None:
            log.info("no checkpoint in %s: starting a fresh run", out)
            return None, None
        return found
    return Path(resume), load_checkpoint(resume)


@dataclass
class Progress:
    """Where training stands: what a checkpoint records and a resumed run restores."""

    epoch: int = 0                   # completed epochs (the current epoch's 0-based index)
    step: int = 0                    # batches done in the current epoch
    global_step: int = 0             # optimizer steps since the start
    best_top1: float | None = None
    history: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # this rank's running sums of the current epoch


def new_epoch_stats() -> dict:
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "skipped": 0, "time": 0.0}


def restore(ckpt: dict | None, path: Path | None, model: nn.Module, optimizer, scaler,
            classes: list[str]) -> Progress:
    """The one restore step: the model, optimizer, scaler, position, history and (last, so
    that nothing draws in between) every random generator of this rank. Fresh: a new Progress."""
    if ckpt is None:
        return Progress(stats=new_epoch_stats())
    if ckpt.get("classes") and list(ckpt["classes"]) != classes:
        raise CheckpointError(f"{path}: the checkpoint was trained on other classes than the dataset lists; "
                              "resume with the run's own data, or start a new run")
    rank, world_size = D.get_rank(), D.get_world_size()
    model.load_state_dict(clean_state_dict(ckpt["model"]))
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    per_rank_stats = ckpt["metrics"].get("epoch_stats") if ckpt["step"] else None
    per_rank_rng = ckpt.get("rng_per_rank") or []
    # The epochs before the checkpoint, from the run it belongs to (possibly another folder).
    progress = Progress(epoch=ckpt["epoch"], step=ckpt["step"], global_step=ckpt["global_step"],
                        best_top1=ckpt.get("best_top1"),
                        history=read_history(path.parent / "metrics.jsonl", ckpt["epoch"]),
                        stats=dict(per_rank_stats[rank] if len(per_rank_stats) == world_size else per_rank_stats[0])
                        if per_rank_stats else new_epoch_stats())
    # Dropout continues exactly where the stopped run was, on every rank.
    set_rng_state(per_rank_rng[rank] if len(per_rank_rng) == world_size else ckpt["rng"])
    log.info("resuming from %s at epoch %d, step %d", path, progress.epoch + 1, progress.step)
    return progress


# ---------------------------------------------------------------------------- the loop
def train(cfg: Config, resume: str | None = None, *, overwrite: bool = False) -> dict:
    """Train `cfg.model` on `cfg.data` with `cfg.train`, writing the run to `cfg.out`.

    Args:
        cfg: the run's configuration; its recipe is resolved here, in place
            (`Config.resolve_recipe`), and logged.
        resume: None (fresh run), "auto" (continue from `cfg.out`'s newest readable `last.pt`,
            or start fresh when there is none) or the path of a checkpoint.
        overwrite: start a fresh run in a folder that holds an earlier one (its files go).

    Returns:
        {"best_top1", "final" (the last epoch's metrics), "history", "run_dir", "last", "best",
         "classes", "epochs", "model" (the trained model, unwrapped, on its device)}.

    Raises:
        ConfigError: a bad model option, or `cfg.out` holds a run and neither `resume` nor
            `overwrite` says what to do with it.
        TrainingInterrupted: SIGTERM/SIGINT (after saving a checkpoint).
        NonFiniteLossError: NaN/inf loss (before the optimizer step; checkpoints untouched).
        TooManyBadSamples: more unreadable videos in an epoch than data.max_bad_fraction.
    """
    out = Path(cfg.out)
    cfg.resolve_recipe()
    log_recipe(cfg)
    check_model(cfg)  # before anything is read or written
    prepare_run_folder(out, resume, overwrite)
    owns_group = not D.is_distributed()
    device = D.init_distributed(cfg.device)
    before = set(out.iterdir()) if out.is_dir() else None  # None: this run creates the folder
    started = False  # the first checkpoint is written: the folder holds a run from then on

    def on_start():
        nonlocal started
        started = True

    stop = StopRequest()
    try:
        # SIGINT/SIGTERM are this run's until the loaders' workers have stopped (here, not at
        # exit): a Ctrl-C during the exit cannot turn the stop into a traceback.
        with stop.installed(), contextlib.ExitStack() as cleanup:
            return _train(cfg, resume, device, on_start, stop, cleanup)
    except BaseException:
        if not started and D.is_main():
            _remove_failed_start(out, before)
        raise
    finally:
        gc.unfreeze()  # undo the freeze before the loader forked (see _train)
        if owns_group:
            D.cleanup()


def _remove_failed_start(out: Path, before: set[Path] | None) -> None:
    """Remove what a start that failed before its first checkpoint created in `out` (config,
    metrics, frame-count cache, TensorBoard folder), and `out` itself if it created that."""
    if not out.is_dir():
        return
    for path in set(out.iterdir()) - (before or set()):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if before is None and not any(out.iterdir()):
        out.rmdir()


def _train(cfg: Config, resume: str | None, device: torch.device, on_start, stop: StopRequest,
           cleanup: contextlib.ExitStack) -> dict:
    t = cfg.train
    rank, world_size = D.get_rank(), D.get_world_size()
    main = rank == 0
    distributed = D.is_distributed()
    out = Path(cfg.out)

    # -- what to continue from: a bad path fails before any work
    resume_path, ckpt = find_checkpoint(out, resume)
    if ckpt is not None and ckpt["config"].get("model", {}).get("name") != cfg.model.name:
        raise CheckpointError(
            f"{resume_path}: the checkpoint holds model '{ckpt['config']['model']['name']}' but the config "
            f"asks for '{cfg.model.name}'; resume with the run's own config.yaml"
        )

    # Different seeds per rank: dropout differs between processes; DDP syncs the initial weights.
    torch.manual_seed(t.seed + rank)
    np.random.seed(t.seed + rank)
    random.seed(t.seed + rank)

    # -- data (annotations), the model and its initial weights, then the frame counts
    train_ds, val_ds = build_datasets(cfg)
    classes = list(train_ds.classes)
    model = build_model(cfg, len(classes), fresh=ckpt is None)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    for ds in (train_ds, val_ds):
        ds.count_video_frames()  # once here, not in every worker
    loss_weights = class_balance(train_ds.labels, classes, t.balance)
    train_loader = build_loader(train_ds, t.batch_size, train=True, workers=cfg.data.workers,
                                seed=t.seed, distributed=distributed,
                                weights=class_balanced_weights(train_ds.labels) if t.balance == "sampler" else None)
    val_loader = build_loader(val_ds, t.batch_size, train=False, workers=cfg.data.workers,
                              seed=t.seed, distributed=distributed)
    for loader in (train_loader, val_loader):
        cleanup.callback(close_loader, loader)
    set_epoch(train_loader, 0)
    steps_per_epoch = len(train_loader)  # batches per epoch and rank (the last partial one dropped)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"the {cfg.data.train_split} split has {len(train_ds)} videos, fewer than one batch of "
            f"{t.batch_size} x {world_size} processes; lower train.batch_size"
        )

    frozen_bn = frozen_batchnorms(model, t)
    if t.sync_bn and distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        frozen_bn = frozen_batchnorms(model, t)
    elif t.sync_bn and distributed:
        log.warning("train.sync_bn: PyTorch's SyncBatchNorm runs on CUDA only; BatchNorm stays per process on %s",
                    device)
    model.to(device)
    if device.type == "cuda" and t.channels_last:
        to_channels_last(model)
    amp = resolve_amp(t.amp, device)
    class_weight = torch.tensor(loss_weights, dtype=torch.float32, device=device) if t.balance == "loss" else None
    mixing = t.mixup > 0 or t.cutmix > 0

    # -- optimizer; the lr follows the linear scaling rule and is set every step by lr_factor
    base_lr = cfg.scaled_lr(world_size)
    optimizer = torch.optim.SGD(param_groups(model, t.weight_decay, t.fc_lr_mult), lr=base_lr,
                                momentum=t.momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    train_model: nn.Module = model
    if distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        train_model = torch.compile(train_model)
    progress = restore(ckpt, resume_path, model, optimizer, scaler, classes)
    log.info("%s: %d classes, %d train / %d val videos, effective batch %d, lr %.4g, amp %s, %s x %d",
             cfg.model.name, len(classes), len(train_ds), len(val_ds), cfg.effective_batch_size(world_size),
             base_lr, amp, device, world_size)

    # -- run folder (rank 0): config, metrics (trimmed to the resumed epoch), TensorBoard
    tb = None
    if main:
        cfg.save_yaml(out / "config.yaml")
        with open(out / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in progress.history)
        tb = _tensorboard(out / "tb")

    def save(metrics: dict, *, best: bool = False) -> None:
        """Checkpoint `progress` as last.pt (the previous one kept as last.prev.pt) and, when
        `best`, as best.pt. Call on every rank: the random generators of all ranks are gathered,
        so each continues its own stream on resume; rank 0 writes."""
        rng = D.all_gather_object(get_rng_state())
        if main:
            state = {
                "model": clean_state_dict(model.state_dict()), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "epoch": progress.epoch, "step": progress.step,
                "global_step": progress.global_step, "rng": rng[0], "rng_per_rank": rng,
                "config": cfg.to_dict(), "classes": classes, "versions": versions(),
                "best_top1": progress.best_top1, "metrics": metrics,
            }
            save_checkpoint(out / LAST, state, keep_previous=True)
            if best:
                save_checkpoint(out / BEST, state)
        on_start()

    show_progress = main and sys.stderr.isatty()
    # Loader workers fork from this process: objects frozen here stay shared instead of being
    # copied page by page as the workers' reference counting touches them (docs/reliability.md).
    gc.collect()
    gc.freeze()
    try:
        while progress.epoch < t.epochs:
            epoch = progress.epoch
            set_epoch(train_loader, epoch, start_batch=progress.step)
            train_mode(model, frozen_bn)
            # A DataLoader draws a worker seed from the global generator when it (re)starts its
            # workers, which a resumed run does at other times than an uninterrupted one. The
            # dataset seeds its augmentation from (seed, epoch, index) instead, so keep that draw
            # off the global generator: dropout then sees the same numbers in both runs.
            with torch.random.fork_rng(devices=[]):
                batches = iter(train_loader)
            # Running sums stay on the device (reading them would wait for the GPU every step),
            # continuing from the restored ones in the order an uninterrupted run adds them.
            loss_sum = torch.tensor(progress.stats["loss_sum"], dtype=torch.float64, device=device)
            correct = torch.tensor(progress.stats["correct"], dtype=torch.int64, device=device)
            t0 = time.perf_counter()
            bar = tqdm(batches, total=steps_per_epoch, initial=progress.step,
                       desc=f"epoch {epoch + 1}/{t.epochs}", disable=not show_progress,
                       dynamic_ncols=True, leave=False)
            for batch in bar:
                clip = model_input(batch["clip"], device)  # uint8 (B, C, T, H, W) -> normalised float
                label = batch["label"].to(device, non_blocking=True)
                target = label
                if mixing:  # seeded by the position alone: a resumed run mixes the same way
                    clip, target = mix_batch(clip, label, len(classes), mixup=t.mixup, cutmix=t.cutmix,
                                             rng=np.random.default_rng([t.seed, epoch, progress.step, rank]))
                # The optimizer steps every `accumulate` batches and at the end of the epoch.
                last_micro = (progress.step + 1) % t.accumulate == 0 or progress.step + 1 == steps_per_epoch
                no_sync = train_model.no_sync() if distributed and not last_micro else contextlib.nullcontext()
                with no_sync:
                    with autocast_context(device, amp):
                        logits = train_model(clip)
                    loss = classification_loss(logits.float(), target, class_weight)
                    # The one host synchronisation of a step, for two decisions every rank must
                    # share: stop before backward when the loss blew up on any rank (no weight is
                    # spoiled, the last checkpoint stays the good one), and stop on a signal.
                    flags = D.all_reduce_sum([float(not torch.isfinite(loss)), float(stop.signum is not None)])
                    if flags[0] > 0:
                        raise NonFiniteLossError(
                            f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {progress.step + 1} "
                            f"of {steps_per_epoch}; the weights and {out / LAST} are from before it. "
                            "Lower train.lr, enable clip_grad or check the data"
                        )
                    scaler.scale(loss / t.accumulate).backward()
                if last_micro:
                    lr = base_lr * lr_factor(cfg, epoch + progress.step / steps_per_epoch)
                    for g in optimizer.param_groups:
                        g["lr"] = lr * g["lr_mult"]
                    if t.clip_grad:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    progress.global_step += 1
                progress.step += 1
                loss_sum += loss.detach().double() * label.shape[0]
                correct += (logits.argmax(1) == label).sum()
                progress.stats["seen"] += label.shape[0]
                progress.stats["skipped"] += int(torch.as_tensor(batch.get("num_skipped", 0)).sum())
                if show_progress and progress.step % 10 == 0:
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2g}")
                # A signal is honoured at an optimizer-step boundary (all ranks agree via `flags`).
                if flags[1] > 0 and last_micro and progress.step < steps_per_epoch:
                    progress.stats.update(time=progress.stats["time"] + time.perf_counter() - t0,
                                          loss_sum=loss_sum.item(), correct=int(correct))
                    stop.settled = True
                    save({"epoch_stats": D.all_gather_object(progress.stats)})
                    D.barrier()
                    where = f"epoch {epoch + 1}, step {progress.step} of {steps_per_epoch}"
                    log.info("saved %s at %s", out / LAST, where)
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM,
                                              f"training interrupted by {signal.Signals(stop.signum).name} at "
                                              f"{where}; saved {out / LAST}, continue with --resume auto")
            bar.close()
            progress.stats.update(time=progress.stats["time"] + time.perf_counter() - t0,
                                  loss_sum=loss_sum.item(), correct=int(correct))

            # -- end of epoch: statistics over all ranks, bad samples, validation, checkpoints
            s = progress.stats
            loss_total, correct_total, seen, skipped = D.all_reduce_sum(
                [s["loss_sum"], s["correct"], s["seen"], s["skipped"]]).tolist()
            try:
                check_bad_fraction(int(skipped), int(seen), cfg.data.max_bad_fraction, min_seen=0)
            except TooManyBadSamples as e:
                raise TooManyBadSamples(f"epoch {epoch + 1}: {e}") from None
            record: dict[str, Any] = {
                "epoch": epoch + 1, "global_step": progress.global_step, "loss": loss_total / seen,
                "lr": optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_mult"],
                "train_top1": 100.0 * correct_total / seen,
                "val_top1": None, "val_top5": None, "val_mean_class_accuracy": None,
                "clips_per_s": seen / max(s["time"], 1e-9), "time": s["time"], "num_skipped": int(skipped),
            }
            if (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs:
                with torch.random.fork_rng(devices=[]):  # as above: the loader's seed draw
                    result = evaluate(unwrap_model(train_model), val_loader, device, amp=amp,
                                      distributed=distributed, num_classes=len(classes), desc="val")
                record.update(val_top1=result.top1, val_top5=result.top5,
                              val_mean_class_accuracy=result.mean_class_accuracy)
            improved = record["val_top1"] is not None and (
                progress.best_top1 is None or record["val_top1"] > progress.best_top1)
            if improved:
                progress.best_top1 = record["val_top1"]
            progress.history.append(record)
            progress.epoch, progress.step, progress.stats = epoch + 1, 0, new_epoch_stats()
            log.info("epoch %d/%d: loss %.4f, train top-1 %.2f, val top-1 %s, %.1f clips/s",
                     epoch + 1, t.epochs, record["loss"], record["train_top1"],
                     "-" if record["val_top1"] is None else f"{record['val_top1']:.2f}", record["clips_per_s"])
            save(record, best=improved)
            if main:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                if tb is not None:
                    for k, v in record.items():
                        if isinstance(v, (int, float)) and k != "epoch":
                            tb.add_scalar(k, v, epoch + 1)
                    tb.flush()
            D.barrier()
    except KeyboardInterrupt:
        stop.settled = True
        last = out / LAST
        kept = f"the last checkpoint {last} is as it was" if last.exists() else "no checkpoint was written"
        raise TrainingInterrupted(signal.SIGINT, f"training interrupted at once by a second Ctrl-C; {kept}"
                                  + (", continue with --resume auto" if last.exists() else "")) from None

    if main:
        if tb is not None:
            tb.close()
        if progress.history:
            plot_curves(progress.history, out / "curves.png")
    return {
        "best_top1": progress.best_top1, "final": progress.history[-1] if progress.history else {},
        "history": progress.history, "run_dir": str(out), "last": str(out / LAST), "best": str(out / BEST),
        "classes": classes, "epochs": t.epochs, "model": model,
    }
