"""Checkpoints: one dict, written atomically, read back only with `torch.load(weights_only=True)`.

A checkpoint carries everything needed to rebuild the model (its config and class names) and to
continue training exactly where it stopped:

    {"model": state_dict (no "module." prefix), "optimizer", "scheduler", "scaler",
     "epoch": completed epochs, "step": batches done in the current epoch, "global_step",
     "rng": {"torch", "cuda", "numpy", "python"}, "config": cfg.to_dict(), "classes": [...],
     "versions": {"gdn", "torch", "python"}, "best_top1": float | None, "metrics": dict}

Every value is a tensor, a number, a string or a plain container of those, so the safe loader
accepts it and a file carrying arbitrary pickled objects is refused instead of executed.
"""

from __future__ import annotations

import logging
import os
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gdn.config import Config
from gdn.models.weights import PEER_KEYS, CheckpointError, clean_state_dict, detect_format, load_file

log = logging.getLogger(__name__)

LAST = "last.pt"
LAST_PREV = "last.prev.pt"  # the previous `last.pt`, kept so a corrupt newest file is not fatal
BEST = "best.pt"


# ---------------------------------------------------------------------------- save / load
def save_checkpoint(path: str | Path, state: dict, *, keep_previous: bool = False) -> None:
    """Write `state` to `path` atomically: a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder (same filesystem, so the rename is
    atomic), are flushed and fsynced, then `os.replace`d over `path`. With `keep_previous`, an
    existing `path` is first moved to `<stem>.prev<suffix>` (e.g. `last.prev.pt`).
    Call on rank 0 only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A writer killed mid-write (SIGKILL, power loss) cannot clean up: its temporary file is
    # removed by the next write here (one writer per run folder: rank 0).
    for stale in path.parent.glob(f".{path.name}.tmp*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def previous_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by `save_checkpoint`, on the CPU, with the safe (weights-only)
    unpickler (`gdn.models.weights.load_file`).

    Raises `CheckpointError` naming the file when it is missing, truncated or corrupt, holds
    objects the safe loader refuses (possibly malicious: never loaded), or is not a gdn checkpoint.
    """
    ckpt = load_file(path, "checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        peer = isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) and detect_format(
            clean_state_dict(ckpt["state_dict"])) in PEER_KEYS
        raise CheckpointError(
            f"{path}: not a gdn checkpoint (expected keys 'model' and 'config', found {keys}); "
            + ("it is a TSM repository or MMAction2 checkpoint: convert it with `gdn convert SRC OUT.pt`" if peer
               else "use a file written by `gdn train` or `gdn convert`")
        )
    return ckpt


def find_resume_checkpoint(run_dir: str | Path) -> tuple[Path, dict] | None:
    """For `--resume auto`: the newest readable of `last.pt` and `last.prev.pt` in `run_dir`.

    Returns None when neither exists (a fresh run). A corrupt `last.pt` falls back to
    `last.prev.pt` with a warning; when every candidate is unreadable, raises naming them all.
    """
    run_dir = Path(run_dir)
    candidates = [p for p in (run_dir / LAST, run_dir / LAST_PREV) if p.exists()]
    if not candidates:
        return None
    errors = []
    for path in candidates:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            log.warning("%s; trying the previous checkpoint", e)
            errors.append(str(e))
            continue
        return path, ckpt
    raise CheckpointError(
        "no usable checkpoint to resume from:\n  " + "\n  ".join(errors)
        + "\nstart a fresh run (another --out, or without --resume) or pass --resume PATH"
    )


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not possible on every platform (e.g. Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- contents
def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def versions() -> dict[str, str]:
    import gdn

    return {"gdn": gdn.__version__, "torch": str(torch.__version__), "python": platform.python_version()}


def get_rng_state() -> dict[str, Any]:
    """Every random generator the training loop draws from, as tensors and plain lists."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_state[0]),
            "keys": [int(k) for k in np_state[1]],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def build_model_from_checkpoint(ckpt: dict) -> tuple[nn.Module, Config, list[str]]:
    """Rebuild the trained model from a loaded checkpoint alone: `(model, config, classes)`.

    The model is created from the recorded config (name, dropout, options) with one output per
    recorded class, then loaded strictly. It is returned in eval mode, on the CPU.
    """
    from gdn.models import create_model

    cfg = Config.from_dict(ckpt["config"], source="checkpoint config")
    state = clean_state_dict(ckpt["model"])
    classes = list(ckpt.get("classes") or [])
    if not classes:  # fall back to the classifier's width; names are then unknown
        fc = [v for k, v in state.items() if k.endswith("fc.weight")]
        classes = [str(i) for i in range(fc[-1].shape[0])] if fc else []
    model = create_model(cfg.model.name, num_classes=len(classes), dropout=cfg.model.dropout, **cfg.model.options)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not match model '{cfg.model.name}' with {len(classes)} classes: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval(), cfg, classes
