"""The peers' checkpoints as gdn models (`load_model`) and as gdn checkpoints (`convert_checkpoint`,
`gdn convert`).

    model, cfg, classes = gdn.load_model("TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth")
    convert_checkpoint("tsm_r50_1x1x8_50e_sthv1_rgb_20210203-01dce462.pth", "tsm_sthv1.pt",
                       dataset="ssv1", data_root="/data/sthv1")

A TSM-repository or MMAction2 TSN/TSM/I3D file loads exactly (strictly, every tensor, no head reset)
into the gdn network it describes (`gdn.models.peers.describe_checkpoint`); with the keys renamed
gdn's `tsn_r*` / `tsm_r*` give the logits of the peers' own code (MMAction2's TSN within float
rounding: its head averages the features of the frames before its linear classifier, gdn averages
the frame logits). A converted file is the dict `gdn train` writes ("model", "config",
"classes"), so `gdn test`, `predict`, `export` and `train --init-from` take it, and
`create_model("gdn_r50", pretrained=FILE)` starts GDN from it by the 2D rule of section 3.2.

Class names travel with the weights: the file's own order (`classes=` a list or a file of one
name a line, in output order), or the dataset's as the peer orders it (SSv1: sorted names for the
TSM repository, labels.csv order for MMAction2; SSv2: the JSON's indices). Both given must agree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from gdn.config import Config
from gdn.data.annotations import class_difference, read_annotations
from gdn.engine.checkpoint import (
    build_model_from_checkpoint,
    load_checkpoint,
    save_checkpoint,
    versions,
)
from gdn.errors import UsageError
from gdn.models import create_model, list_models
from gdn.models.peers import PeerCheckpoint, describe_checkpoint
from gdn.models.weights import (
    CheckpointError,
    WeightsMismatchError,
    load_file,
    load_weights,
    shifted_blocks,
)

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "convert_checkpoint", "load_model", "read_class_names"]

_SOURCES = "a gdn checkpoint, a TSM repository checkpoint or an MMAction2 TSN/TSM/I3D checkpoint"


class LoadedModel(NamedTuple):
    """`load_model`'s result: the model (eval mode, CPU), a config naming it (and the frames,
    dataset and label order the file tells), and its class names in output order (None where
    the file has none and none were given)."""

    model: nn.Module
    config: Config
    classes: list[str] | None


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one a line in output order (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: class-names file not found; pass a text file with one class name a line, "
                         "in the model's output order")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"{path}: class {twice!r} is listed twice; one name a line, each once")
    return names


def _names(classes: Sequence[str] | str | Path | None) -> list[str] | None:
    """Class names given as a list or as a file of them (`read_class_names`), or None."""
    if isinstance(classes, (str, Path)):
        return read_class_names(classes)
    return list(classes) if classes else None


def _is_gdn_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and "model" in obj and "config" in obj


def _choose_model(info: PeerCheckpoint, model: str | None, path: str) -> str:
    """The gdn model to load the file into: the one it describes, or the user's (checked)."""
    if model is None:
        if info.model is None:
            raise WeightsMismatchError(f"{path}: {info.unknown}")
        return info.model
    if model not in list_models():
        raise UsageError(f"--model {model}: not a gdn model; choose one of {', '.join(list_models())}")
    if info.i3d and not model.startswith("i3d_"):
        raise UsageError(f"{path} holds MMAction2's I3D; {model} is another network: use i3d_r50 or i3d_nl_r50")
    if not info.i3d and not model.startswith(("tsn_", "tsm_")):
        raise UsageError(f"{path} holds a {'TSM' if info.shifted else 'TSN'} network; {model} is another one. "
                         f"To start {model} from its weights (the 2D rule of section 3.2), pass the file as "
                         f"pretrained: create_model('{model}', pretrained=FILE) or gdn train --pretrained FILE")
    if info.model is not None and model != info.model:
        log.warning("%s: loading the weights of %s into %s as asked (the weights are the same, the network is not)",
                    path, info.model, model)
    return model


def _describe(obj: Any, path: str, format: str | None) -> PeerCheckpoint:
    info = describe_checkpoint(obj, path)
    if format is not None and format != info.format:
        raise UsageError(f"{path}: --from {format}, but its keys are those of format '{info.format}'")
    for fact in info.facts:
        log.info("%s: %s", path, fact)
    return info


def _load_peer(obj: Any, path: str, info: PeerCheckpoint, name: str, options: dict | None) -> nn.Module:
    """The gdn model `name` (see `_choose_model`), loaded strictly from `obj`, in eval mode."""
    kwargs = {**info.options, **(options or {})}
    try:
        net = create_model(name, num_classes=info.num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: cannot build {name} with {kwargs}: {e}") from None
    if info.shifted and not shifted_blocks(net):
        raise UsageError(f"{path}: its keys say its blocks shift in time (TSM); {name} has no shift: "
                         f"use {name.replace('tsn_', 'tsm_')}")
    report = load_weights(net, obj, format=info.format, name=path)
    assert not report.head_reset and not report.random_init  # sized from the file: an exact load
    return net.eval()


def load_model(path: str | Path, *, model: str | None = None, options: dict | None = None,
               classes: Sequence[str] | str | Path | None = None, format: str | None = None) -> LoadedModel:
    """An eval-mode gdn model from a gdn checkpoint, a TSM-repository or an MMAction2 checkpoint.

    Args:
        path: the checkpoint file (read with the safe unpickler).
        model: the gdn model to load a peer's file into, where the file cannot tell (a shifted
            network whose file does not say its fold: "tsm_r50") or to load a TSN file into the
            TSM of its depth; checked against what the file says. Ignored for gdn checkpoints.
        options: `create_model` options (e.g. {"fold_div": 4}) over those the file tells.
        classes: class names in output order, or a file of them (one a line); a gdn checkpoint's
            own names must equal them.
        format: "tsm" or "mmaction" to insist on a peer's format (default: from the keys).

    Returns:
        `LoadedModel(model, config, classes)`.

    Raises:
        CheckpointError / WeightsMismatchError naming the file: unreadable, in no known format, a
        network gdn does not build, a partial or mis-shaped match; UsageError: a `model` or
        `classes` that contradicts the file.
    """
    path = str(path)
    obj = load_file(path, "checkpoint", f"pass {_SOURCES}")
    names = _names(classes)
    if _is_gdn_checkpoint(obj):
        net, cfg, own = build_model_from_checkpoint(obj)
        if names is not None and names != own:
            raise UsageError(f"{path}: its classes differ from the ones given ({class_difference(own, names)})")
        return LoadedModel(net, cfg, own)
    info = _describe(obj, path, format)
    if names is not None and len(names) != info.num_classes:
        raise UsageError(f"{path}: its classifier has {info.num_classes} outputs, {len(names)} class names were given")
    name = _choose_model(info, model, path)
    net = _load_peer(obj, path, info, name, options)
    return LoadedModel(net, _config(name, {**info.options, **(options or {})}, info), names)


def _gdn_dataset(info: PeerCheckpoint) -> str | None:
    """gdn's `data.dataset` for the file's dataset: SSv1 and SSv2 as such, others (Kinetics, ...) as list files."""
    return info.dataset if info.dataset in (None, "ssv1", "ssv2") else "list"


def _config(name: str, options: dict, info: PeerCheckpoint, **data: Any) -> Config:
    """A config naming the model and the data settings known (the file's, then `data`'s); its
    evaluation protocol is the peer's own (`gdn test` then reproduces the published numbers)."""
    told = {"frames": info.frames, "dataset": _gdn_dataset(info), "label_order": info.label_order,
            "sampling": info.sampling, "protocol": info.format}
    settings = {k: v for k, v in {**told, **data}.items() if v is not None}
    return Config.from_dict({"model": {"name": name, "options": options}, "data": settings},
                            source=f"the settings of a {info.format} checkpoint")


def convert_checkpoint(src: str | Path, out: str | Path, *, model: str | None = None, options: dict | None = None,
                       classes: str | Path | Sequence[str] | None = None, frames: int | None = None,
                       format: str | None = None, dataset: str | None = None, data_root: str | Path | None = None,
                       label_order: str | None = None, split: str = "validation") -> dict[str, Any]:
    """Write the TSM-repository or MMAction2 checkpoint `src` as a gdn checkpoint `out`.

    The model and its settings come from `src` as `load_model` reads them; `frames` (required when
    the file does not say it), `dataset`, `data_root` and `label_order` fill in or override the
    data settings recorded in the config. Class names: `classes` (names or a file), and/or the
    classes of `dataset`'s `split` under `data_root` in `label_order` (default: the peer's order);
    one of them is required, and both must agree. The written file is read back and must give the
    same logits as the loaded model on a random clip.

    Returns a summary (model, format, classes, frames, dataset, label order, tensors, facts) for
    the command's table. Raises UsageError (and the errors of `load_model`) naming the file.
    """
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise UsageError(f"{out}: the output would overwrite the source; choose another OUT.pt")
    obj = load_file(src, "checkpoint", f"pass {_SOURCES}")
    if _is_gdn_checkpoint(obj):
        raise UsageError(f"{src}: already a gdn checkpoint; `gdn test`, `predict`, `export` take it as it is")
    info = _describe(obj, str(src), format)
    name = _choose_model(info, model, str(src))
    frames = frames or info.frames
    if frames is None:
        raise UsageError(f"{src}: the file does not say how many frames it was trained with; pass --frames N")
    dataset = dataset or _gdn_dataset(info)
    if dataset == "ssv1" and label_order is None:
        label_order = info.label_order or {"tsm": "sorted", "mmaction": "csv"}[info.format]
    names = _class_names(src, info, classes, dataset, data_root, label_order, split)
    net = _load_peer(obj, str(src), info, name, options)
    classes_file = str(Path(classes).resolve()) if isinstance(classes, (str, Path)) and dataset == "list" else None
    data = {"frames": frames, "dataset": dataset, "root": str(data_root) if data_root else None,
            "label_order": label_order, "classes_file": classes_file}
    cfg = _config(name, {**info.options, **(options or {})}, info, **data)
    save_checkpoint(out, {"model": net.state_dict(), "config": cfg.to_dict(), "classes": names,
                          "versions": versions(),
                          "converted_from": {"file": str(src), "format": info.format, "facts": info.facts}})
    _verify(net, out, frames)
    return {"source": str(src), "format": info.format, "model": name, "options": cfg.model.options,
            "classes": names, "frames": frames, "dataset": cfg.data.dataset if dataset else None,
            "label_order": label_order, "tensors": len(net.state_dict()), "facts": info.facts}


def _class_names(src: Path, info: PeerCheckpoint, classes, dataset: str | None, data_root, label_order: str | None,
                 split: str) -> list[str]:
    """The class names of a conversion, from `classes` and/or the dataset, checked against each
    other and the classifier."""
    given = _names(classes)
    from_data = None
    if dataset in ("ssv1", "ssv2") and data_root is not None:
        from_data = read_annotations(dataset, data_root, split, label_order=label_order or "sorted").classes
        where = f"the {dataset} {split} annotations under {data_root}" + (f" ({label_order} order)" if dataset == "ssv1" else "")
    if given is None and from_data is None:
        raise UsageError(f"{src}: the file holds no class names; pass --classes FILE (one name a line, in output "
                         "order) or --dataset ssv1|ssv2 --data-root DIR to take them from the dataset")
    if given is not None and from_data is not None and given != from_data:
        raise UsageError(f"{src}: the classes given differ from those of {where} ({class_difference(given, from_data)}); "
                         "check --classes and --label-order")
    names = given if given is not None else from_data
    if len(names) != info.num_classes:
        source = "the classes given" if given is not None else where
        raise UsageError(f"{src}: its classifier has {info.num_classes} outputs, {source} list {len(names)} classes")
    return names


@torch.no_grad()
def _verify(net: nn.Module, out: Path, frames: int) -> None:
    """The written checkpoint must rebuild the same network: identical logits on a random clip."""
    rebuilt, _, _ = build_model_from_checkpoint(load_checkpoint(out))
    clip = torch.randn(1, 3, frames, 64, 64, generator=torch.Generator().manual_seed(0))
    if not torch.equal(rebuilt(clip), net(clip)):
        raise CheckpointError(f"{out}: the written checkpoint does not rebuild the converted network (a bug in gdn)")
