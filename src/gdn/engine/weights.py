"""Initialising a model from another run's weights (fine-tuning), with every mismatch named.

`load_weights(model, source)` copies a gdn checkpoint's (or a plain state dict's) parameters
into `model` and refuses anything that does not fit: keys the model has and the source lacks
(missing), keys the source has and the model lacks (unexpected), and keys of both whose shapes
differ (mis-shaped) are listed in one error. Only the classifier may differ, and only when asked:
`reset_head=True` re-initialises the head (`fc.*`) and loads everything else, which is how a
checkpoint trained on one dataset (174 classes) starts a run on another (10 classes).

    report = load_weights(model, "runs/ssv2/best.pt", reset_head=True)
    log.info("%s", report)

Files are read with the safe loader (`torch.load(weights_only=True)`), like every checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gdn.engine.checkpoint import CheckpointError, clean_state_dict, load_checkpoint
from gdn.errors import GdnError

log = logging.getLogger(__name__)

__all__ = ["WeightsMismatchError", "WeightsReport", "load_weights"]


class WeightsMismatchError(GdnError, ValueError):
    """The source's parameters do not fit the model; the message lists every offending key."""


@dataclass
class WeightsReport:
    """What `load_weights` did. Shapes are `(source shape, model shape)`."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)       # in the model, not in the source
    unexpected: list[str] = field(default_factory=list)    # in the source, not in the model
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    head_reset: list[str] = field(default_factory=list)    # re-initialised (reset_head=True)

    def __str__(self) -> str:
        text = f"{self.source}: loaded {len(self.loaded)} tensors"
        if self.head_reset:
            text += f", re-initialised the head ({', '.join(self.head_reset)})"
        return text


def _read_source(source: str | Path | dict) -> tuple[str, dict[str, torch.Tensor]]:
    """(name for messages, state dict) of a checkpoint path, a checkpoint dict or a state dict."""
    if isinstance(source, dict):
        name = "<state dict>"
        state = source
    else:
        name = str(source)
        path = Path(source)
        try:
            state = load_checkpoint(path)  # a gdn checkpoint: safe loader, errors name the file
        except CheckpointError as e:
            if "not a gdn checkpoint" not in str(e):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # a plain state dict
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint dict
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatchError(f"{name}: holds no state dict of tensors; pass a checkpoint written by "
                                   "`gdn train` or a state dict file")
    return name, clean_state_dict(state)


def _listing(title: str, items: list[str], show: int = 10) -> str:
    more = f", ... ({len(items) - show} more)" if len(items) > show else ""
    return f"\n  {title} ({len(items)}): {', '.join(items[:show])}{more}"


def load_weights(model: nn.Module, source: str | Path | dict, *, reset_head: bool = False,
                 head: str = "fc") -> WeightsReport:
    """Copy the weights of `source` into `model`; everything but the head must fit exactly.

    Args:
        model: the model to initialise (e.g. fresh from `create_model`).
        source: a checkpoint path (gdn checkpoint or plain state dict file), a checkpoint dict
            (with a "model" entry) or a state dict. DDP/compile prefixes are stripped.
        reset_head: re-initialise the classifier (`head`'s parameters) instead of loading it;
            needed when the source was trained for another class count.
        head: the name of the classifier module.

    Returns:
        A WeightsReport (loaded keys, and the head keys that were re-initialised).

    Raises:
        WeightsMismatchError: listing the missing, unexpected and mis-shaped keys, when any key
            outside the head differs, or the head differs and `reset_head` is False.
        CheckpointError: the file is missing, corrupt or unsafe.
    """
    name, source_state = _read_source(source)
    target = model.state_dict()
    prefix = f"{head}."
    is_head = lambda k: k.startswith(prefix)  # noqa: E731

    report = WeightsReport(source=name)
    report.missing = [k for k in target if k not in source_state]
    report.unexpected = [k for k in source_state if k not in target]
    report.mismatched = {k: (tuple(v.shape), tuple(target[k].shape)) for k, v in source_state.items()
                         if k in target and v.shape != target[k].shape}

    body_problems = ([k for k in report.missing if not is_head(k)] + [k for k in report.unexpected if not is_head(k)]
                     + [k for k in report.mismatched if not is_head(k)])
    head_differs = any(is_head(k) for k in [*report.missing, *report.unexpected, *report.mismatched])
    if body_problems or (head_differs and not reset_head):
        mis = [f"{k} {src} vs model {dst}" for k, (src, dst) in report.mismatched.items()]
        if body_problems:
            what = "its parameters do not fit this model (another architecture or model options?)"
        else:
            what = (f"only the classifier '{head}' differs (another class count?); pass reset_head=True "
                    "(model.reset_head: true) to re-initialise it")
        raise WeightsMismatchError(
            f"{name}: {what}"
            + (_listing("missing in the source", report.missing) if report.missing else "")
            + (_listing("unexpected in the source", report.unexpected) if report.unexpected else "")
            + (_listing("mis-shaped (source vs model)", mis) if mis else "")
        )

    keep = {k: v for k, v in source_state.items() if k in target and not (reset_head and is_head(k))}
    model.load_state_dict(keep, strict=False)
    report.loaded = list(keep)
    if reset_head:
        module = model.get_submodule(head)
        if not hasattr(module, "reset_parameters"):
            raise WeightsMismatchError(f"the model's '{head}' ({type(module).__name__}) cannot be re-initialised")
        module.reset_parameters()
        report.head_reset = [k for k in target if is_head(k)]
    # Report, not only raise: a fine-tuning run's log should say what was reused.
    report.missing = [k for k in report.missing if k not in report.head_reset]
    log.info("%s", report)
    return report
