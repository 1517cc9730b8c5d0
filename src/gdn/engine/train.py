"""The training loop: `train(cfg)` reads top to bottom, like nanoGPT's.

The default recipe is the paper's (section 3.2): SGD momentum 0.9, lr 0.02 at batch 48 scaled
linearly to the effective batch, weight decay 5e-4 (none on BatchNorm parameters and biases),
40 epochs, lr x0.1 at epochs 20 and 30, dropout 0.5, gradient norm clipped at 20.

One process per device; under torchrun the model is wrapped in DistributedDataParallel.
Everything a run produces goes to `cfg.out`:

    config.yaml     the resolved config
    last.pt         after every epoch (and on SIGTERM/SIGINT, mid-epoch); last.prev.pt the one before
    best.pt         the checkpoint with the best validation top-1
    metrics.jsonl   one JSON object per epoch
    curves.png      loss and accuracy curves, drawn at the end
    tb/             TensorBoard events, when tensorboard is installed

Resuming (`resume="auto"` or a path) continues exactly: model, optimizer, loss scaler, epoch,
batch within the epoch and every random generator are restored, and the data loader skips the
batches already seen, so the parameters equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from gdn.config import Config
from gdn.data.transforms import model_input
from gdn.engine import distributed as D
from gdn.engine.checkpoint import (
    BEST,
    LAST,
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
from gdn.models import create_model

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; raised before the optimizer step, so no weight is spoiled."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was saved at the next step boundary.

    `exit_code` is 128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell reports.
    """

    def __init__(self, signum: int, checkpoint: Path | None):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        where = f"; saved {checkpoint}, continue with --resume auto" if checkpoint else ""
        super().__init__(f"training interrupted by {signal.Signals(signum).name}{where}")


# ---------------------------------------------------------------------------- building blocks
def build_datasets(cfg: Config):
    """The training and validation datasets described by `cfg.data` (same classes in both)."""
    from gdn.data.datasets import build_dataset

    d = cfg.data
    # Frame counts of webm files (which store none) are read from / kept in this folder.
    cache_dir = d.cache_dir or cfg.out
    common = dict(frames=d.frames, size=d.size, short_side=d.short_side, sampling=d.sampling,
                  label_order=d.label_order, classes_file=d.classes_file, seed=cfg.train.seed,
                  cache_dir=cache_dir)
    train_ds = build_dataset(d.dataset, d.root, d.train_split, train=True, flip=d.flip,
                             list_file=d.train_list, max_bad_fraction=d.max_bad_fraction, **common)
    val_ds = build_dataset(d.dataset, d.root, d.val_split, train=False, list_file=d.val_list, **common)
    for ds in (train_ds, val_ds):
        ds.count_video_frames()  # once here, not in every worker
    if list(val_ds.classes) != list(train_ds.classes):
        raise ValueError(
            f"the {d.train_split} and {d.val_split} splits under {d.root} list different classes "
            f"({len(train_ds.classes)} vs {len(val_ds.classes)}); check data.classes_file / label_order"
        )
    return train_ds, val_ds


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


def resolve_amp(amp: str, device: torch.device) -> str:
    """Mixed precision on CUDA only: "auto" -> bf16 there; anything -> "none" on the CPU."""
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            log.info("train.amp=%s applies on CUDA only; training in fp32 on %s", amp, device)
        return "none"
    return "bf16" if amp == "auto" else amp


def to_channels_last(model: nn.Module) -> None:
    """channels_last for the 2D convs (4-D weights), channels_last_3d for the 3D ones."""
    for p in model.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
        elif p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM/SIGINT into a request (`flag.signum`) honoured at the next step boundary.

    A second SIGINT aborts at once. Only the main thread can install handlers; elsewhere the
    context is a no-op.
    """

    class Flag:
        signum: int | None = None

    flag = Flag()

    def handler(signum, frame):
        if flag.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s received: saving a checkpoint at the next step, then stopping",
                    signal.Signals(signum).name)
        flag.signum = signum

    previous = {}
    try:
        for s in (signal.SIGTERM, signal.SIGINT):
            previous[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag
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
    import matplotlib

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
    axes[2].plot(epochs, [h["lr"] for h in history], marker="o")
    axes[2].set(title="learning rate (end of epoch)", xlabel="epoch", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))


# ---------------------------------------------------------------------------- the loop
def train(cfg: Config, resume: str | None = None) -> dict:
    """Train `cfg.model` on `cfg.data` with `cfg.train`, writing the run to `cfg.out`.

    Args:
        cfg: the run's configuration.
        resume: None (fresh run), "auto" (continue from `cfg.out`'s newest readable `last.pt`,
            or start fresh when there is none) or the path of a checkpoint.

    Returns:
        {"best_top1", "final" (the last epoch's metrics), "history", "run_dir", "last", "best",
         "classes", "epochs", "model" (the trained model, unwrapped, on its device)}.

    Raises:
        TrainingInterrupted: SIGTERM/SIGINT (after saving a checkpoint).
        NonFiniteLossError: NaN/inf loss (before the optimizer step; checkpoints untouched).
        TooManyBadSamples: more unreadable videos in an epoch than data.max_bad_fraction.
    """
    owns_group = not D.is_distributed()
    device = D.init_distributed(cfg.device)
    try:
        return _train(cfg, resume, device)
    finally:
        gc.unfreeze()  # undo the freeze before the loader forked (see _train)
        if owns_group:
            D.cleanup()


def _train(cfg: Config, resume: str | None, device: torch.device) -> dict:
    from gdn.data.datasets import TooManyBadSamples, check_bad_fraction
    from gdn.data.loader import build_loader, set_epoch
    from gdn.engine.evaluate import autocast_context, evaluate

    t = cfg.train
    rank, world_size = D.get_rank(), D.get_world_size()
    main = rank == 0
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    # -- resume: find the checkpoint first, so a bad path fails before any work
    ckpt, resume_path = None, None
    if resume == "auto":
        found = find_resume_checkpoint(out)
        if found is not None:
            resume_path, ckpt = found
            log.info("resuming from %s (epoch %d, step %d)", resume_path, ckpt["epoch"], ckpt["step"])
        else:
            log.info("no checkpoint in %s: starting a fresh run", out)
    elif resume:
        resume_path, ckpt = Path(resume), load_checkpoint(resume)
        log.info("resuming from %s (epoch %d, step %d)", resume, ckpt["epoch"], ckpt["step"])
    if ckpt is not None and ckpt["config"].get("model", {}).get("name") != cfg.model.name:
        raise CheckpointError(
            f"the checkpoint holds model '{ckpt['config']['model']['name']}' but the config asks for "
            f"'{cfg.model.name}'; resume with the run's own config.yaml"
        )

    # Different seeds per rank: dropout differs between processes; DDP syncs the initial weights.
    torch.manual_seed(t.seed + rank)
    np.random.seed(t.seed + rank)
    random.seed(t.seed + rank)

    # -- data
    train_ds, val_ds = build_datasets(cfg)
    classes = list(train_ds.classes)
    distributed = D.is_distributed()
    train_loader = build_loader(train_ds, t.batch_size, train=True, workers=cfg.data.workers,
                                seed=t.seed, distributed=distributed)
    val_loader = build_loader(val_ds, t.batch_size, train=False, workers=cfg.data.workers,
                              seed=t.seed, distributed=distributed)
    set_epoch(train_loader, 0)
    steps_per_epoch = len(train_loader)  # batches per epoch and rank (the last partial one dropped)
    if steps_per_epoch == 0:
        raise ValueError(
            f"the {cfg.data.train_split} split has {len(train_ds)} videos, fewer than one batch of "
            f"{t.batch_size} x {world_size} processes; lower train.batch_size"
        )

    # -- model
    model = create_model(cfg.model.name, num_classes=len(classes), dropout=cfg.model.dropout,
                         pretrained=None if ckpt is not None else cfg.model.pretrained,
                         **cfg.model.options)
    if ckpt is None and cfg.model.init_from:
        from gdn.models.weights import load_weights

        log.info("%s", load_weights(model, cfg.model.init_from, reset_head=cfg.model.reset_head))
    frozen_bn = partial_bn(model) if t.partial_bn else []
    if t.sync_bn and distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        frozen_bn = partial_bn(model) if t.partial_bn else []
    elif t.sync_bn and distributed:
        log.warning("train.sync_bn: PyTorch's SyncBatchNorm runs on CUDA only; BatchNorm stays per process on %s",
                    device)
    model.to(device)
    if device.type == "cuda" and t.channels_last:
        to_channels_last(model)
    amp = resolve_amp(t.amp, device)

    # -- optimizer; the lr follows the linear scaling rule and is set every step by lr_factor
    base_lr = cfg.scaled_lr(world_size)
    optimizer = torch.optim.SGD(param_groups(model, t.weight_decay, t.fc_lr_mult), lr=base_lr,
                                momentum=t.momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    log.info("%s: %d classes, %d train / %d val videos, effective batch %d, lr %.4g, amp %s, %s x %d",
             cfg.model.name, len(classes), len(train_ds), len(val_ds), cfg.effective_batch_size(world_size),
             base_lr, amp, device, world_size)

    # -- state to continue from
    start_epoch, start_step, global_step, best_top1 = 0, 0, 0, None
    epoch_stats = {"loss_sum": 0.0, "correct": 0, "seen": 0, "skipped": 0, "time": 0.0}
    if ckpt is not None:
        model.load_state_dict(clean_state_dict(ckpt["model"]))
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_step, global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        best_top1 = ckpt.get("best_top1")
        if start_step:  # the running sums of the interrupted epoch, one dict per rank
            per_rank = ckpt["metrics"]["epoch_stats"]
            epoch_stats = dict(per_rank[rank]) if len(per_rank) == world_size else dict(per_rank[0])
        if ckpt.get("classes") and list(ckpt["classes"]) != classes:
            raise CheckpointError("the checkpoint was trained on other classes than the dataset lists")
    # The epochs before the checkpoint, from the run it belongs to (possibly another folder).
    history = read_history(resume_path.parent / "metrics.jsonl", start_epoch) if ckpt is not None else []

    train_model: nn.Module = model
    if distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        train_model = torch.compile(train_model)

    # -- run folder (rank 0): config, metrics (trimmed to the resumed epoch), TensorBoard
    tb = None
    if main:
        cfg.save_yaml(out / "config.yaml")
        with open(out / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
        tb = _tensorboard(out / "tb")

    def checkpoint(epoch: int, step: int, metrics: dict) -> dict | None:
        """The state to save (on rank 0; None elsewhere). Call on every rank: the random
        generators of all ranks are gathered, so each continues its own stream on resume."""
        rng = D.all_gather_object(get_rng_state())
        if not main:
            return None
        return {
            "model": clean_state_dict(model.state_dict()), "optimizer": optimizer.state_dict(),
            "scheduler": {"schedule": t.schedule, "base_lr": base_lr,
                          "lr": optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_mult"]},
            "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "global_step": global_step,
            "rng": rng[0], "rng_per_rank": rng, "config": cfg.to_dict(), "classes": classes, "versions": versions(),
            "best_top1": best_top1, "metrics": metrics,
        }

    show_progress = main and sys.stderr.isatty()
    # Loader workers fork from this process: objects frozen here stay shared instead of being
    # copied page by page as the workers' reference counting touches them (docs/reliability.md).
    gc.collect()
    gc.freeze()
    with stop_on_signals() as stop:
        for epoch in range(start_epoch, t.epochs):
            resumed_mid_epoch = epoch == start_epoch and start_step > 0
            first_step = start_step if epoch == start_epoch else 0
            if not resumed_mid_epoch:
                epoch_stats = {"loss_sum": 0.0, "correct": 0, "seen": 0, "skipped": 0, "time": 0.0}
            set_epoch(train_loader, epoch, start_batch=first_step)
            train_mode(model, frozen_bn)
            if epoch == start_epoch and ckpt is not None:
                # dropout continues exactly where the stopped run was, on every rank
                per_rank = ckpt.get("rng_per_rank") or []
                set_rng_state(per_rank[rank] if len(per_rank) == world_size else ckpt["rng"])
            # A DataLoader draws a worker seed from the global generator when it (re)starts its
            # workers, which a resumed run does at other times than an uninterrupted one. The
            # dataset seeds its augmentation from (seed, epoch, index) instead, so keep that draw
            # off the global generator: dropout then sees the same numbers in both runs.
            with torch.random.fork_rng(devices=[]):
                batches = iter(train_loader)
            t0 = time.perf_counter()
            bar = tqdm(batches, total=steps_per_epoch, initial=first_step, desc=f"epoch {epoch + 1}/{t.epochs}",
                       disable=not show_progress, dynamic_ncols=True, leave=False)
            step = first_step
            for batch in bar:
                clip = model_input(batch["clip"], device)  # uint8 (B, C, T, H, W) -> normalised float
                label = batch["label"].to(device, non_blocking=True)
                # The optimizer steps every `accumulate` batches and at the end of the epoch.
                last_micro = (step + 1) % t.accumulate == 0 or step + 1 == steps_per_epoch
                sync = contextlib.nullcontext() if last_micro or not distributed else train_model.no_sync()
                with sync:
                    with autocast_context(device, amp):
                        logits = train_model(clip)
                    loss = F.cross_entropy(logits.float(), label)
                    # Stop before backward and the optimizer step when the loss blew up (on any
                    # rank), so no weight is spoiled and the last checkpoint stays the good one.
                    nonfinite = not bool(torch.isfinite(loss))
                    flags = D.all_reduce_sum([float(nonfinite), float(stop.signum is not None)])
                    if flags[0] > 0:
                        raise NonFiniteLossError(
                            f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1} of "
                            f"{steps_per_epoch}; the weights and {out / LAST} are from before it. "
                            "Lower train.lr, enable clip_grad or check the data"
                        )
                    scaler.scale(loss / t.accumulate).backward()
                if last_micro:
                    lr = base_lr * lr_factor(cfg, epoch + step / steps_per_epoch)
                    for g in optimizer.param_groups:
                        g["lr"] = lr * g["lr_mult"]
                    if t.clip_grad:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    global_step += 1
                step += 1
                epoch_stats["loss_sum"] += loss.item() * label.shape[0]
                epoch_stats["correct"] += int((logits.argmax(1) == label).sum())
                epoch_stats["seen"] += label.shape[0]
                epoch_stats["skipped"] += int(torch.as_tensor(batch.get("num_skipped", 0)).sum())
                if show_progress:
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2g}")
                # A signal is honoured at an optimizer-step boundary (all ranks agree via `flags`).
                if flags[1] > 0 and last_micro and step < steps_per_epoch:
                    epoch_stats["time"] += time.perf_counter() - t0
                    path = out / LAST
                    state = checkpoint(epoch, step, {"epoch_stats": D.all_gather_object(epoch_stats)})
                    if main:
                        save_checkpoint(path, state, keep_previous=True)
                        log.info("saved %s at epoch %d, step %d", path, epoch + 1, step)
                    D.barrier()
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM, path)
            bar.close()
            epoch_stats["time"] += time.perf_counter() - t0

            # -- end of epoch: statistics over all ranks, bad samples, validation, checkpoints
            loss_sum, correct, seen, skipped = D.all_reduce_sum(
                [epoch_stats["loss_sum"], epoch_stats["correct"], epoch_stats["seen"], epoch_stats["skipped"]]
            ).tolist()
            try:
                check_bad_fraction(int(skipped), int(seen), cfg.data.max_bad_fraction, min_seen=0)
            except TooManyBadSamples as e:
                raise TooManyBadSamples(f"epoch {epoch + 1}: {e}") from None
            record: dict[str, Any] = {
                "epoch": epoch + 1, "global_step": global_step, "loss": loss_sum / seen,
                "lr": optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_mult"],
                "train_top1": 100.0 * correct / seen,
                "val_top1": None, "val_top5": None, "val_mean_class_accuracy": None,
                "clips_per_s": seen / max(epoch_stats["time"], 1e-9), "time": epoch_stats["time"],
                "num_skipped": int(skipped),
            }
            if (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs:
                with torch.random.fork_rng(devices=[]):  # as above: the loader's seed draw
                    result = evaluate(unwrap_model(train_model), val_loader, device, amp=amp,
                                      distributed=distributed, num_classes=len(classes), desc="val")
                record.update(val_top1=result.top1, val_top5=result.top5,
                              val_mean_class_accuracy=result.mean_class_accuracy)
            improved = record["val_top1"] is not None and (best_top1 is None or record["val_top1"] > best_top1)
            if improved:
                best_top1 = record["val_top1"]
            history.append(record)
            log.info("epoch %d/%d: loss %.4f, train top-1 %.2f, val top-1 %s, %.1f clips/s",
                     epoch + 1, t.epochs, record["loss"], record["train_top1"],
                     "-" if record["val_top1"] is None else f"{record['val_top1']:.2f}", record["clips_per_s"])
            state = checkpoint(epoch + 1, 0, record)
            if main:
                save_checkpoint(out / LAST, state, keep_previous=True)
                if improved:
                    save_checkpoint(out / BEST, state)
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                if tb is not None:
                    for k, v in record.items():
                        if isinstance(v, (int, float)) and k != "epoch":
                            tb.add_scalar(k, v, epoch + 1)
                    tb.flush()
            D.barrier()
            start_step = 0

    if main:
        if tb is not None:
            tb.close()
        if history:
            plot_curves(history, out / "curves.png")
    return {
        "best_top1": best_top1, "final": history[-1] if history else {}, "history": history,
        "run_dir": str(out), "last": str(out / LAST), "best": str(out / BEST),
        "classes": classes, "epochs": t.epochs, "model": model,
    }
