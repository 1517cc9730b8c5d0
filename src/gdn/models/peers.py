"""Which gdn network a peer's checkpoint holds: the TSM repository's and MMAction2's TSN and TSM,
and MMAction2's I3D and I3D-NL.

`describe_checkpoint(obj, filename)` reads what a loaded checkpoint says about itself and returns
a `PeerCheckpoint`: the gdn model name and options, the class count, and the frames, dataset
and class order it was trained with, each fact with where it came from. The architecture comes
from the tensors, the settings from the file's own metadata:

- depth: the blocks per stage and the block type in the keys (ResNet-18/34: basic blocks,
  ResNet-50/101: bottlenecks);
- TSN or TSM: both peers wrap a shifted conv in a module whose only child is `.net`, so its
  keys say which blocks shift (`layer1.0.conv1.net.weight` / `layer1.0.conv1.conv.net.weight`);
- the shift's fold (`shift_div`) and the frame count: the TSM repository writes its settings into
  the file name (`TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth`: dataset,
  modality, arch, shift_div 8, place, consensus, 8 segments, 45 epochs), MMAction2 its config into
  `meta` (1.x: the config text `meta["cfg"]`; 0.x: only its name, `meta["config_name"]`,
  e.g. `tsm_r50_1x1x8_50e_sthv1_rgb.py`), and into its published file names;
- the class order: the TSM repository sorts SSv1's class names, MMAction2 keeps labels.csv
  order; both use SSv2's JSON indices (docs/peers.md);
- MMAction2's I3D (`ResNet3d`, a 5x7x7 stem): the inflation pattern (3x1x1 or 1x1x1 first convs),
  the non-local blocks and their sub-sampling from the tensors; the temporal strides, res5's
  stride and the non-local blocks' mode from its config text, or from the model zoo's file name.

What the file cannot tell is never guessed: `PeerCheckpoint.model` is then None and
`PeerCheckpoint.unknown` says what to pass (`--model tsm_r50`). Variants gdn does not build
(TSM with non-local blocks or temporal pooling, shift place "block", optical flow, MobileNet,
I3D with 3x3x3 kernels or non-local blocks other than embedded Gaussian) raise
`WeightsMismatchError` naming the variant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gdn.models.i3d import I3D_INFLATE, NONLOCAL_BLOCKS
from gdn.models.weights import (
    PEER_KEYS,
    WeightsMismatchError,
    detect_format,
    read_state_dict,
)

# (block type, blocks per stage) -> depth, as torchvision builds its ResNets
_DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34,
           ("bottleneck", (3, 4, 6, 3)): 50, ("bottleneck", (3, 4, 23, 3)): 101}
# The TSM repository's dataset names (its ops/dataset_config.py) and MMAction2's, as gdn names them.
_DATASETS = {"something": "ssv1", "somethingv2": "ssv2", "sthv1": "ssv1", "sthv2": "ssv2"}
# How each peer orders SSv1's classes (gdn's data.label_order).
_SSV1_ORDER = {"tsm": "sorted", "mmaction": "csv"}
_TSM_NAME = re.compile(
    r"TSM_(?P<dataset>[A-Za-z0-9]+)_(?P<modality>RGB|Flow|RGBDiff)_(?P<arch>[A-Za-z0-9]+)"
    r"(?:_shift(?P<shift_div>\d+)_(?P<place>[a-z]+))?(?P<tpool>_tpool)?_(?P<consensus>[a-z]+)"
    r"_segment(?P<segments>\d+)_e\d+(?P<rest>.*)")
# MMAction2 config names: 0.x `tsm_r50_1x1x8_50e_sthv1_rgb`, 1.x
# `tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb` (clip_len x frame_interval x num_clips).
_MMACTION_RESNET = re.compile(r"(tsn|tsm)_(?:imagenet-pretrained-)?r\d+[_-]")
_MMACTION_CLIPS = re.compile(r"[_-]1x1x(\d+)[_-]")
_MMACTION_DATASET = re.compile(r"[_-](sthv1|sthv2|kinetics\d+|ucf101|hmdb51)[_-]")


@dataclass
class PeerCheckpoint:
    """What a peer's checkpoint file says about the network and data it was trained with.

    `model` is a gdn model name (`tsm_r50`), or None when the file cannot tell (`unknown` says
    what is missing); `shifted` whether its keys carry shift wrappers (TSM); `i3d` whether it is
    MMAction2's I3D; `options` its `create_model` options (a fold other than 8, I3D's strides);
    `frames` the segments per clip (I3D: the clip length), `sampling` gdn's `data.sampling` for
    it where it is not TSN's segments ("dense"); `dataset` as the file names it, in gdn's words where gdn has the dataset
    ("ssv1", "ssv2"; otherwise e.g. "kinetics400"); `label_order` how its SSv1 classes are
    ordered; `facts` one line per fact and its source, for the log.
    """

    format: str
    model: str | None
    num_classes: int
    shifted: bool = False
    i3d: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    frames: int | None = None
    sampling: str | None = None
    dataset: str | None = None
    label_order: str | None = None
    unknown: str | None = None
    facts: list[str] = field(default_factory=list)


def _blocks_per_stage(keys: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Residual blocks in each of `layer1` .. `layer4` of a state dict under torchvision's names."""
    return tuple(len({k.split(".")[1] for k in keys if k.startswith(f"layer{i}.")}) for i in range(1, 5))


def _resnet_depth(keys: Mapping[str, torch.Tensor]) -> tuple[int | None, str]:
    """(depth, description) of a ResNet state dict under torchvision's names."""
    blocks = _blocks_per_stage(keys)
    kind = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
    stem = keys.get("conv1.weight")
    described = f"a ResNet with {blocks} {kind} blocks per stage"
    if stem is None or stem.dim() != 4 or tuple(stem.shape[:2]) != (64, 3):
        return None, described + (f" and a {tuple(stem.shape)} stem" if stem is not None else " and no stem")
    return _DEPTHS.get((kind, blocks)), described


def _unsupported(variant: str, source: str) -> WeightsMismatchError:
    return WeightsMismatchError(f"{source}: {variant}; gdn has no such network (it loads the peers' TSN and TSM "
                                "ResNets: ResNet-18/50/101, shift place 'blockres', RGB input)")


def _tsm_metadata(obj: Mapping, filename: str) -> dict[str, Any]:
    """The TSM repository's settings from its file name; the `arch` entry."""
    found: dict[str, Any] = {}
    arch = obj.get("arch")
    if isinstance(arch, str):
        found["arch"] = (arch, "the checkpoint's 'arch' entry")
    m = _TSM_NAME.search(Path(filename).name)
    if m is None:
        return found
    src = f"the file name {Path(filename).name}"
    if m["modality"] != "RGB":
        raise _unsupported(f"a {m['modality']} model (the file name says so)", filename)
    if m["tpool"] or "_nl" in m["rest"]:
        raise _unsupported("a TSM with " + ("temporal pooling" if m["tpool"] else "non-local blocks")
                           + " (the file name says so)", filename)
    if m["place"] and m["place"] != "blockres":
        raise _unsupported(f"a TSM with shift place '{m['place']}' (the file name says so)", filename)
    found["arch"] = (m["arch"], src)
    found["shift"] = (m["shift_div"] is not None, src)
    if m["shift_div"]:
        found["shift_div"] = (int(m["shift_div"]), src)
    found["frames"] = (int(m["segments"]), src)
    found["dataset"] = (m["dataset"], src)
    return found


# the dataset an MMAction2 config validates on, from its annotation file's path
_ANN_DATASET = re.compile(r"(?:ann_file_val|ann_file)\s*=\s*'[^']*?(sthv1|sthv2|kinetics\d+)")


def _mmaction_sources(obj: Mapping, filename: str) -> tuple[str | None, list[tuple[str, str]]]:
    """Where an MMAction2 checkpoint tells its settings: its config text (1.x `meta["cfg"]`, or
    None), and the names that encode them (0.x `meta["config_name"]`, `meta["experiment_name"]`,
    the file name), each with how to name it in a message."""
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else {}
    text = meta.get("cfg") or meta.get("config")
    names = [(meta.get("config_name"), "the config name in the checkpoint's meta"),
             (meta.get("experiment_name"), "the experiment name in the checkpoint's meta"),
             (Path(filename).name, f"the file name {Path(filename).name}")]
    return (text if isinstance(text, str) else None), [(n, src) for n, src in names if isinstance(n, str)]


def _mmaction_metadata(obj: Mapping, filename: str) -> dict[str, Any]:
    """MMAction2's settings from its config text (1.x `meta["cfg"]`) or config name (0.x
    `meta["config_name"]`, or the file name)."""
    found: dict[str, Any] = {}
    text, names = _mmaction_sources(obj, filename)
    if text is not None:
        src = "the config text in the checkpoint's meta"
        if re.search(r"non_local_cfg\s*=", text):
            raise _unsupported("a TSM with non-local blocks (its config says so)", filename)
        if re.search(r"temporal_pool\s*=\s*True", text):
            raise _unsupported("a TSM with temporal pooling (its config says so)", filename)
        if (place := re.search(r"shift_place\s*=\s*'(\w+)'", text)) and place.group(1) != "blockres":
            raise _unsupported(f"a TSM with shift place '{place.group(1)}' (its config says so)", filename)
        if m := re.search(r"type\s*=\s*'(ResNetTSM|ResNet)'", text):
            found["shift"] = (m.group(1) == "ResNetTSM", src)
            if m.group(1) == "ResNetTSM":  # ResNetTSM's default fold is 8 unless the config sets shift_div
                div = re.search(r"shift_div\s*=\s*(\d+)", text)
                found["shift_div"] = (int(div.group(1)) if div else 8, src)
        if m := re.search(r"num_segments\s*=\s*(\d+)", text) or re.search(r"num_clips\s*=\s*(\d+)", text):
            found["frames"] = (int(m.group(1)), src)
        if m := _ANN_DATASET.search(text):
            found["dataset"] = (m.group(1), src)
    for name, src in names:
        if "shift" not in found and (m := _MMACTION_RESNET.match(Path(name).name)):
            found["shift"] = (m.group(1) == "tsm", src)
            if m.group(1) == "tsm":
                found["shift_div"] = (8, f"{src}: every TSM ResNet config of MMAction2 0.x and 1.x sets shift_div=8")
        if "frames" not in found and (m := _MMACTION_CLIPS.search(name)):
            found["frames"] = (int(m.group(1)), src)
        if "dataset" not in found and (m := _MMACTION_DATASET.search(name)):
            found["dataset"] = (m.group(1), src)
    return found


def describe_checkpoint(obj: Any, filename: str = "<checkpoint>") -> PeerCheckpoint:
    """What the TSM-repository or MMAction2 checkpoint `obj` (as loaded) holds.

    Raises `WeightsMismatchError` naming the file for a file in neither format, a network gdn
    does not build, or metadata that contradicts the tensors (an `arch` of another depth).
    """
    _, state = read_state_dict(obj, filename)
    fmt = detect_format(state)
    if fmt not in PEER_KEYS:
        raise WeightsMismatchError(
            f"{filename}: not a TSM repository or MMAction2 checkpoint (its keys are in format "
            f"'{fmt or 'unknown'}', e.g. {', '.join(list(state)[:3]) or 'no tensors'}); pass --from tsm|mmaction "
            "only for their files")
    keys, shifted = PEER_KEYS[fmt](state)
    if fmt == "mmaction" and keys["conv1.weight"].dim() == 5:
        return _describe_i3d(obj, state, keys, filename)
    if any(".net." in k for k in keys):
        raise _unsupported("a TSM with shift place 'block' or a wrapped module gdn does not build "
                           f"(e.g. {next(k for k in keys if '.net.' in k)})", filename)
    fc = keys.get("fc.weight")
    if fc is None or fc.dim() != 2:
        raise WeightsMismatchError(f"{filename}: holds no classifier (fc); to start a model from its backbone "
                                   "pass it as pretrained= (gdn train --pretrained)")
    info = PeerCheckpoint(format=fmt, model=None, num_classes=fc.shape[0], shifted=bool(shifted))
    meta = (_tsm_metadata if fmt == "tsm" else _mmaction_metadata)(obj, filename)

    depth, layout = _resnet_depth(keys)
    info.facts.append(f"{layout} (the tensors)")
    arch = meta.get("arch")
    if arch and depth and arch[0] != f"resnet{depth}":
        raise WeightsMismatchError(f"{filename}: {arch[1]} says {arch[0]}, its tensors are those of ResNet-{depth}")
    if shifted:
        info.facts.append(f"a temporal shift in {len(shifted)} blocks (the '.net' wrappers in the keys)")
    if "shift" in meta and meta["shift"][0] != bool(shifted):
        raise WeightsMismatchError(f"{filename}: {meta['shift'][1]} says {'TSM' if meta['shift'][0] else 'TSN'}, "
                                   f"its keys say {'TSM' if shifted else 'TSN'} (shift wrappers in "
                                   f"{len(shifted)} blocks)")
    _set_data(info, meta)

    if depth is None:
        info.unknown = f"{layout} is none of ResNet-18/34/50/101; pass the gdn model it was built as (--model)"
    elif not shifted:
        info.model = f"tsn_r{depth}"
    elif "shift_div" not in meta:
        info.unknown = (f"the file does not say how many channels its shift moves (shift_div; 8 in every "
                        f"checkpoint of both model zoos): pass --model tsm_r{depth} for 1/8 each way")
    else:
        info.model = f"tsm_r{depth}"
        if meta["shift_div"][0] != 8:
            info.options["fold_div"] = meta["shift_div"][0]
        info.facts.append(f"shift_div {meta['shift_div'][0]} ({meta['shift_div'][1]})")
    return info


def _set_data(info: PeerCheckpoint, meta: dict[str, Any]) -> None:
    """The frames and dataset the file tells, and its SSv1 class order."""
    for key in ("frames", "dataset"):
        if key in meta:
            setattr(info, key, _DATASETS.get(meta[key][0], meta[key][0]) if key == "dataset" else meta[key][0])
            info.facts.append(f"{key} {getattr(info, key)} ({meta[key][1]})")
    if info.dataset == "ssv1":
        info.label_order = _SSV1_ORDER[info.format]
        info.facts.append(f"SSv1 classes in {info.label_order} order "
                          f"({'the TSM repository' if info.format == 'tsm' else 'MMAction2'}'s)")


# MMAction2 I3D config names: `i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb`
# (0.x: `i3d_nl_embedded_gaussian_r50_32x2x1_100e_kinetics400_rgb`): clip_len x frame_interval x num_clips.
_I3D_CLIP = re.compile(r"[_-](\d+)x(\d+)x(\d+)[_-]")
_I3D_NL_MODE = re.compile(r"nl[_-](dot[_-]product|embedded[_-]gaussian|gaussian)")


def _i3d_metadata(obj: Mapping, filename: str) -> dict[str, Any]:
    """MMAction2's I3D settings from its config text (`meta["cfg"]`) or its model zoo name."""
    found: dict[str, Any] = {}
    text, names = _mmaction_sources(obj, filename)
    if text is not None and "ResNet3d" in text:
        src = "the config text in the checkpoint's meta"
        value = lambda key, default: (m.group(1) if (m := re.search(rf"{key}\s*=\s*([\w'(), ]+?)(?:,\s*\w+\s*=|\))",  # noqa: E731
                                                                      text)) else default)
        t = (int(value("conv1_stride_t", "1")), int(value("pool1_stride_t", "1")),
             2 if value("with_pool2", "True") == "True" else 1)
        found["temporal_strides"] = (t, src)
        strides = re.search(r"spatial_strides\s*=\s*\(([\d, ]+)\)", text)
        dilations = re.search(r"dilations\s*=\s*\(([\d, ]+)\)", text)
        found["res5"] = ((int(strides.group(1).split(",")[3]) if strides else 2,
                          int(dilations.group(1).split(",")[3]) if dilations else 1), src)
        if m := re.search(r"mode\s*=\s*'(\w+)'", text):
            found["nl_mode"] = (m.group(1), src)
        found["nl_scale"] = (value("use_scale", "True") == "True", src)
        if m := re.search(r"clip_len\s*=\s*(\d+),\s*frame_interval\s*=\s*(\d+)", text):
            found["clip"] = ((int(m.group(1)), int(m.group(2))), src)
        if m := _ANN_DATASET.search(text):
            found["dataset"] = (m.group(1), src)
    for name, src in names:
        if not Path(name).name.startswith("i3d_"):
            continue
        zoo = f"{src} (MMAction2's I3D configs: conv1_stride_t=2, pool1_stride_t=2, pool2; heavy: 1, 1, pool2)"
        found.setdefault("temporal_strides", ((1, 1, 2) if "heavy" in name else (2, 2, 2), zoo))
        found.setdefault("res5", ((2, 1), zoo))
        if m := _I3D_NL_MODE.search(name):
            found.setdefault("nl_mode", (m.group(1).replace("-", "_"), src))
            found.setdefault("nl_scale", (False, f"{src} (every non-local I3D config of MMAction2: use_scale=False)"))
        if m := _I3D_CLIP.search(name):
            found.setdefault("clip", ((int(m.group(1)), int(m.group(2))), src))
        if m := _MMACTION_DATASET.search(name):
            found.setdefault("dataset", (m.group(1), src))
    return found


def _describe_i3d(obj: Mapping, state: Mapping[str, torch.Tensor], keys: Mapping[str, torch.Tensor],
                  filename: str) -> PeerCheckpoint:
    """MMAction2's I3D (`ResNet3d`, inflate_style '3x1x1') and I3D-NL recognizers as gdn's
    `i3d_r50` / `i3d_nl_r50` and the options the file tells (see the module docstring)."""
    stem = keys["conv1.weight"]
    if tuple(stem.shape) != (64, 3, 5, 7, 7):
        raise _unsupported(f"an MMAction2 ResNet3d with a {tuple(stem.shape)} stem (gdn's I3D has MMAction2 "
                           "I3D's 64 x 5x7x7)", filename)
    blocks = _blocks_per_stage(keys)
    if blocks != (3, 4, 6, 3) or "layer1.0.conv3.weight" not in keys:
        raise _unsupported(f"an I3D ResNet with {blocks} blocks per stage (gdn builds the I3D ResNet-50)", filename)
    if any(k.endswith(".conv2.weight") and v.shape[2] != 1 for k, v in keys.items()):
        raise _unsupported("an I3D with 3x3x3 kernels (inflate_style '3x3x3'; gdn's I3D keeps them 1x3x3)", filename)
    inflate = tuple(tuple(int(keys[f"layer{i + 1}.{j}.conv1.weight"].shape[2] == 3) for j in range(n))
                    for i, n in enumerate(blocks))
    nonlocal_at = tuple(tuple(j for j in range(n) if f"layer{i + 1}.{j}.nonlocal_block.conv_out.weight" in keys)
                        for i, n in enumerate(blocks))
    info = PeerCheckpoint(format="mmaction", model=None, num_classes=keys["fc.weight"].shape[0], i3d=True)
    info.facts.append(f"an I3D ResNet-50: 5x7x7 stem, 3x1x1 first convs in blocks {inflate} (the tensors)")
    meta = _i3d_metadata(obj, filename)
    if inflate != I3D_INFLATE:  # options as lists: they go into a YAML config
        info.options["inflate"] = [list(f) for f in inflate]
    if any(nonlocal_at):
        info.facts.append(f"non-local blocks after blocks {nonlocal_at} (the tensors)")
        if not any(".non_local_block.theta." in k for k in state):
            raise _unsupported("non-local blocks in 'gaussian' mode (no theta; gdn builds the embedded Gaussian)",
                               filename)
        if nonlocal_at != NONLOCAL_BLOCKS:
            info.options["nonlocal_blocks"] = [list(b) for b in nonlocal_at]
        if not any(".non_local_block.g.0.conv." in k for k in state):
            info.options["nonlocal_pool"] = False  # mmcv wraps g and phi with their pool when sub-sampling
        mode = meta.get("nl_mode")
        if mode and mode[0] != "embedded_gaussian":
            raise _unsupported(f"non-local blocks in '{mode[0]}' mode ({mode[1]}; gdn builds the embedded "
                               "Gaussian)", filename)
        if meta.get("nl_scale", (False,))[0]:
            raise _unsupported(f"non-local blocks with use_scale=True ({meta['nl_scale'][1]}; gdn's I3D does not "
                               "scale the affinities)", filename)
        if mode:
            info.facts.append(f"embedded Gaussian non-local blocks ({mode[1]})")
    if "temporal_strides" not in meta or (any(nonlocal_at) and "nl_mode" not in meta):
        missing = "its temporal strides" if "temporal_strides" not in meta else "its non-local blocks' mode"
        info.unknown = (f"the file does not say {missing} (no config text, not a model zoo name): pass "
                        f"--model {'i3d_nl_r50' if nonlocal_at == NONLOCAL_BLOCKS else 'i3d_r50'} for MMAction2's "
                        "I3D settings (temporal strides 2, 2, 2; embedded Gaussian non-local blocks)")
        return info
    strides, src = meta["temporal_strides"]
    if strides != (2, 2, 2):
        info.options["temporal_strides"] = list(strides)
    (res5_stride, res5_dilation), res5_src = meta["res5"]
    if (res5_stride, res5_dilation) not in ((2, 1), (1, 2)):
        raise _unsupported(f"an I3D whose res5 has spatial stride {res5_stride} and dilation {res5_dilation} "
                           f"({res5_src}; gdn's: stride 2, or 1 dilated by 2)", filename)
    if res5_stride == 1:
        info.options["res5_stride"] = 1
    info.facts.append(f"temporal strides {strides} (stem conv, pool1, pool2), res5 stride {res5_stride} ({src})")
    if "clip" in meta:
        (clip_len, interval), clip_src = meta["clip"]
        meta["frames"] = (clip_len, clip_src)
        info.sampling = "dense"
        info.facts.append(f"clips of {clip_len} frames {interval} apart ({clip_src})"
                          + ("" if interval == 2 else "; gdn's dense sampling takes them 2 apart"))
    _set_data(info, meta)
    info.model = "i3d_nl_r50" if nonlocal_at == NONLOCAL_BLOCKS else "i3d_r50"
    return info
