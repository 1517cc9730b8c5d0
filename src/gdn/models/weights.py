"""Loading weights into a model: one reader, one filter per source format, one report.

Every way of starting a model from saved weights goes through `load_weights`:
`create_model(name, pretrained=...)` (ImageNet 2D ResNets, the format detected from the keys)
and `gdn train --init-from` (a gdn checkpoint, for fine-tuning). It

1. reads the source (`read_state_dict`): a file, an http(s) URL or an in-memory dict; unwraps
   the "state_dict" / "model" containers and the "module." (DataParallel) and "_orig_mod."
   (torch.compile) prefixes; files only through the safe unpickler (`load_file`);
2. maps it onto the model's keys and shapes with the filter of its format (`FORMATS`, timm's
   `checkpoint_filter_fn`): `filter(state_dict, model) -> (state_dict, random_by_design)`;
3. compares the result with the model key by key, loads it, and returns a `WeightsReport`, or
   raises `WeightsMismatchError` naming what does not fit and changes nothing.

Formats: "gdn" (a gdn model's own state dict: identity), "torchvision" (a 2D ResNet under
torchvision's names; each temporal conv takes its 2D kernel through its `init_from_2d`, paper
section 3.2), the peers' video checkpoints, "tsm" (the TSM repository's) and "mmaction"
(MMAction2's TSN and TSM recognizers): renamed to torchvision's names, then mapped like
"torchvision", so a TSN or TSM checkpoint loads exactly into `tsn_r*` / `tsm_r*` and
initialises GDN by the same 2D rule as ImageNet weights, and "bninception" (the TSN / ECO
repositories' BN-Inception and ECO, for `ECO`). Adding a format is one filter function and one
`FORMATS` entry whose `detect` recognises its keys. A filter raises `WeightsMismatchError` for
what it cannot map; keys it leaves unmapped are reported as unexpected (an error for the strict
formats: gdn and the peers').

    report = load_weights(model, "runs/ssv2/best.pt", reset_head=True)
"""

from __future__ import annotations

import copy
import logging
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gdn.errors import GdnError

log = logging.getLogger(__name__)

# torchvision's ImageNet ResNet weights (IMAGENET1K_V1), for users who are online.
IMAGENET_URLS = {
    18: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    34: "https://download.pytorch.org/models/resnet34-b627a593.pth",
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    101: "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}

# A load that fills fewer than this share of the model's tensors (classifier and tensors
# random by design aside) is refused: it is another format or another network, not a
# partial match worth a warning.
MIN_MATCHED = 0.5

SOURCES_HINT = "pass a checkpoint written by `gdn train`, a state dict file, an http(s) URL or 'imagenet'"


class CheckpointError(GdnError, RuntimeError):
    """A checkpoint or weights file that is missing, truncated, corrupt or unsafe; the message
    names the file."""


class WeightsMismatchError(GdnError, ValueError):
    """The source's tensors do not fit the model; the message names the offending keys."""


def _listing(title: str, items: list[str], show: int = 10) -> str:
    more = f", ... ({len(items) - show} more)" if len(items) > show else ""
    return f"\n  {title} ({len(items)}): {', '.join(items[:show])}{more}"


def _examples(keys: list[str]) -> str:
    picks = dict.fromkeys(keys[i] for i in (0, len(keys) // 2, -1)) if keys else {}
    return ", ".join(picks) or "none"


# ---------------------------------------------------------------------------- reading
def load_file(path: str | Path, what: str = "checkpoint",
              hint: str = "pass the path of a .pt file written by `gdn train`") -> Any:
    """`torch.load(path, weights_only=True)` on the CPU, with errors that name the file.

    Raises `CheckpointError` when the file is missing (`hint` says what to pass instead), empty,
    truncated or corrupt, or holds objects the safe unpickler refuses (possibly malicious:
    never loaded). `what` names the file in messages ("checkpoint", "weights file").
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found; {hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: {what} is empty (0 bytes), probably an interrupted write; delete it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises weights_only=False; the line worth showing names the global.
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        unsafe = [ln for ln in lines if "GLOBAL" in ln or "global" in ln]
        if unsafe:
            raise CheckpointError(
                f"{path}: refused to load: the file holds Python objects other than tensors and plain "
                f"data, which could run code when unpickled ({unsafe[0]}). "
                "It was not written by `gdn train`; do not load it unless you trust its source"
            ) from None
        why = [ln for ln in lines if "Unsupported" in ln or "error" in ln.lower()]
        raise CheckpointError(
            f"{path}: {what} is truncated or corrupt ({why[-1] if why else type(e).__name__}); "
            "delete it or use another"
        ) from None
    except Exception as e:  # zip reader errors, EOFError, ...: the file is truncated or corrupt
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: {what} is truncated or corrupt ({type(e).__name__}: {first}); delete it or use another"
        ) from None


def clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the "module." (DDP) and "_orig_mod." (torch.compile) prefixes from parameter names."""
    out = {}
    for k, v in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def read_state_dict(source: str | Path | Mapping, name: str | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    """`(name for messages, state dict)` of a file, an http(s) URL or an in-memory dict (named
    `name` in messages, e.g. the file it was read from).

    Unwraps a "state_dict" (TSM, MMAction2, Lightning) and then a "model" (gdn checkpoints)
    container, and strips the DDP / compile prefixes. Raises `CheckpointError` for a file that
    cannot be read or downloaded, `WeightsMismatchError` for one that holds no tensors.
    """
    if isinstance(source, Mapping):
        name, obj = name or "<state dict>", source
    else:
        name = str(source)
        if name.startswith(("http://", "https://")):
            try:
                obj = torch.hub.load_state_dict_from_url(name, map_location="cpu", weights_only=True)
            except Exception as e:
                raise CheckpointError(_download_failed(name, e)) from e
        else:
            obj = load_file(source, "weights file", SOURCES_HINT)
    for container in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(container), Mapping):
            obj = obj[container]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsMismatchError(f"{name}: holds no state dict of tensors (found {found}); {SOURCES_HINT}")
    return name, clean_state_dict(obj)


def _download_failed(url: str, error: Exception) -> str:
    """One line: the download of `url` failed, and how to use a copy of the file instead."""
    file = url.rsplit("/", 1)[-1].split("?")[0]
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    why = " ".join(str(error).split()) or type(error).__name__
    return (f"{url}: download failed ({type(error).__name__}: {why}); fetch {file} from that URL where "
            f"there is network and pass its path (pretrained='/path/{file}', gdn train --pretrained "
            f"/path/{file}), or put it in {cache}, where the download would have saved it")


# ---------------------------------------------------------------------------- formats
Filter = Callable[[dict[str, torch.Tensor], nn.Module], tuple[dict[str, torch.Tensor], list[str]]]


def gdn_filter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A gdn model's own state dict: the keys are the model's already."""
    return dict(state_dict), []


def torchvision_filter(state_dict: dict[str, torch.Tensor],
                       model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A 2D ResNet under torchvision's names -> any video ResNet of the same depth and widths.

    Stem, 1x1 convs, shortcuts, BatchNorm and classifier keep their keys. Every module with an
    `init_from_2d` (the 3x3 convs built by conv makers) whose `<name>.weight` is a 2D kernel in
    the source takes that 2D kernel its own way (copy, slice, inflate; section 3.2), on a copy of the
    module, and contributes its resulting tensors under its own keys; the entries it leaves
    random are returned as random by design. Raises `WeightsMismatchError` naming every kernel
    that no slice or inflation fits.
    """
    out = dict(state_dict)
    random_by_design = []
    unfit = []
    for name, module in model.named_modules():
        key = f"{name}.weight"
        if not hasattr(module, "init_from_2d") or key not in state_dict or state_dict[key].dim() != 4:
            continue
        converted = copy.deepcopy(module)
        try:
            random_parts = converted.init_from_2d(state_dict[key].float())
        except RuntimeError as e:  # copy_ between shapes that do not match
            unfit.append(f"{key} {tuple(state_dict[key].shape)} into {type(module).__name__} "
                         f"({str(e).splitlines()[0]})")
            continue
        del out[key]
        for k, v in converted.state_dict().items():
            if k in random_parts:
                random_by_design.append(f"{name}.{k}")
            else:
                out[f"{name}.{k}"] = v
    if unfit:
        raise WeightsMismatchError(
            "2D kernels that fit no slice or inflation of the model's convs; use weights of the same "
            "ResNet depth and widths" + _listing("mis-shaped", unfit))
    for name, module in model.named_modules():
        if getattr(module, "starts_as_identity", False):  # blocks the 2D network lacks (non-local)
            random_by_design += [f"{name}.{k}" for k in module.state_dict() if f"{name}.{k}" not in out]
    return out, random_by_design


# The TSN / ECO repositories' names (Caffe's BN-Inception, ECO's 3D ResNet-18) -> gdn's `ECO`.
_BNI_STEM = {"conv1_7x7_s2": "conv1", "conv2_3x3_reduce": "conv2_reduce", "conv2_3x3": "conv2"}
_BNI_BRANCH = {"1x1": "conv_1x1", "3x3_reduce": "conv_3x3_reduce", "3x3": "conv_3x3", "pool_proj": "pool_proj",
               "double_3x3_reduce": "double_3x3_reduce", "double_3x3_1": "double_3x3_1",
               "double_3x3_2": "double_3x3_2"}
_BNI_KEY = re.compile(r"(?P<layer>conv1_7x7_s2|conv2_3x3_reduce|conv2_3x3|inception_(?P<block>\d[a-e])_"
                      r"(?P<branch>1x1|3x3_reduce|3x3|double_3x3_reduce|double_3x3_[12]|pool_proj))"
                      r"(?P<bn>_bn)?\.(?P<param>\w+)")
_ECO3D_KEY = re.compile(r"res(?P<block>[345][ab])_(?P<part>[12]|down|bn|[12]_bn)\.(?P<param>\w+)")
_ECO3D_NEXT = {"3a": "res3b", "3b": "res4a", "4a": "res4b", "4b": "res5a", "5a": "res5b", "5b": None}
# Caffe's input: BGR in 0-255 minus this mean (TSN's input_mean, in BGR order).
CAFFE_MEAN_BGR = (104.0, 117.0, 128.0)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _bninception_key(key: str) -> str | None:
    """gdn's `ECO` name of a TSN / ECO repository key, or None if it is not one of theirs."""
    if m := _BNI_KEY.fullmatch(key):
        layer = _BNI_STEM.get(m["layer"]) or f"inception_{m['block']}.{_BNI_BRANCH[m['branch']]}"
        return f"{layer}.{'bn' if m['bn'] else 'conv'}.{m['param']}"
    if key.startswith("res3a_2."):
        return f"net3d.conv3a.{key.split('.', 1)[1]}"
    if m := _ECO3D_KEY.fullmatch(key):
        block, part, param = m["block"], m["part"], m["param"]
        if part == "bn":  # the BN after block `block`'s sum: the next block's pre-activation
            nxt = _ECO3D_NEXT[block]
            return f"net3d.{nxt}.preact.{param}" if nxt else f"net3d.bn_final.{param}"
        part = {"down": "downsample", "1": "conv1", "2": "conv2", "1_bn": "bn1"}.get(part)
        return f"net3d.res{block}.{part}.{param}" if part else None
    return None


def bninception_filter(state_dict: dict[str, torch.Tensor],
                       model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A BN-Inception (TSN's or Cadene's ImageNet weights) or an ECO model of the ECO repository
    (Kinetics or Something-Something checkpoints, `base_model.` / `new_fc` names) -> gdn's `ECO`.

    Their networks take Caffe's input (BGR, 0-255, `CAFFE_MEAN_BGR` subtracted); gdn's clips are
    RGB normalised with the ImageNet mean and std. conv1's input channels are put in RGB order
    and the model's `input_scale` / `input_shift` are set to map one input onto the other, so the
    converted network computes what the original computes on the same frames. The classifier
    (`new_fc`, `fc_final`, `fc`, `last_linear`) maps to `fc`. A BN-Inception leaves the 3D part
    random, by design (the ECO paper starts it from a 3D ResNet-18 trained on Kinetics).
    """
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("base_model.")
        head = re.fullmatch(r"(new_fc|fc_final|fc|last_linear)\.(weight|bias)", key)
        mapped = f"fc.{head[2]}" if head else _bninception_key(key)
        out[mapped or key] = value  # an unmapped key is kept, to be reported as unexpected
    if "conv1.conv.weight" in out:
        out["conv1.conv.weight"] = out["conv1.conv.weight"].flip(1)  # BGR -> RGB input channels
        std = torch.tensor(IMAGENET_STD)
        out["input_scale"] = std * 255
        out["input_shift"] = torch.tensor(IMAGENET_MEAN) * 255 - torch.tensor(CAFFE_MEAN_BGR[::-1])
    random_by_design = []
    if not any(k.startswith("net3d.") for k in out):
        random_by_design = [k for k in model.state_dict() if k.startswith("net3d.")]
    return out, random_by_design


def _is_bninception(keys: Mapping[str, torch.Tensor]) -> bool:
    return any(k.removeprefix("base_model.") == "conv1_7x7_s2.weight" for k in keys)


# torchvision ResNet names: stem, blocks (convK, bnK, downsample.0/1) and classifier.
_RESNET_KEY = re.compile(r"(conv1|bn1|fc|layer\d+\.\d+\.(conv\d|bn\d|downsample\.\d))\.\w+")


def _is_2d_resnet(keys: Mapping[str, torch.Tensor]) -> bool:
    return "conv1.weight" in keys and all(_RESNET_KEY.fullmatch(k) and v.dim() <= 4 for k, v in keys.items())


def _is_video_resnet(keys: Mapping[str, torch.Tensor]) -> bool:
    return "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys)


# ---------------------------------------------------------------------------- the peers' formats
# (their key names and the shift's placement, checked against their code: docs/peers.md)
def shifted_blocks(model: nn.Module) -> set[str]:
    """The blocks of `model` whose residual branch carries a temporal shift (`{"layer1.0", ...}`)."""
    return {name for name, m in model.named_modules() if getattr(m, "shift", None) is not None}


def _peer_filter(renamed: dict[str, torch.Tensor], shifted: set[str],
                 model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The common tail of the peers' filters, on a state dict already under torchvision's names.

    `shifted` are the blocks whose keys carry the shift wrapper (`.net`). When the model has
    shifts too they must be in the same blocks (ResNet-101: every second one); a model without
    shifts (TSN, GDN) takes the 2D weights alone (the shift has no parameters), and a source
    without wrappers (TSN) fits a TSM model when the user asks for one. Then `torchvision_filter`
    gives each temporal conv its 2D kernel (a copy for TSN/TSM, section 3.2 for GDN).
    """
    expected = shifted_blocks(model)
    if shifted and expected and shifted != expected:
        only_source, only_model = sorted(shifted - expected), sorted(expected - shifted)
        raise WeightsMismatchError(
            f"the source shifts the residual branch of {len(shifted)} blocks, this model of {len(expected)} "
            "(TSM ResNet-101 shifts every second block of each stage: use tsm_r101)"
            + _listing("shifted in the source only", only_source) + _listing("shifted in the model only", only_model))
    return torchvision_filter(renamed, model)


_TSM_SHIFT = re.compile(r"(layer\d+\.\d+)\.conv1\.net\.")


def tsm_keys(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The TSM repository's keys -> torchvision's, and the blocks whose keys carry a shift.

    Its `main.py` saves the DataParallel `TSN` model (`{"epoch", "arch", "best_prec1",
    "state_dict"}`, "module." stripped here): `base_model.X` -> `X`; `layerX.Y.conv1.net.*` ->
    `layerX.Y.conv1.*` (`.net` is the `TemporalShift` wrapper of a shifted block, shift place
    "blockres"); `new_fc.*` (dropout > 0) or `base_model.fc.*` (dropout 0) -> `fc.*`;
    `downsample.0/1` stay.
    """
    renamed, shifted = {}, set()
    for k, v in state_dict.items():
        if k.startswith("new_fc."):
            k = "fc." + k.removeprefix("new_fc.")
        else:
            k = k.removeprefix("base_model.")
            if m := _TSM_SHIFT.match(k):
                shifted.add(m.group(1))
                k = k.replace(".conv1.net.", ".conv1.", 1)
        renamed[k] = v
    return renamed, shifted


_MMACTION_KEY = re.compile(
    r"backbone\.(?:(?P<stem>conv1)|(?P<block>layer\d+\.\d+)\.(?P<part>conv\d|downsample))"
    r"\.(?P<kind>conv|conv\.net|bn)\.(?P<param>\w+)")
# mmcv's NonLocal3d in an I3D block: theta / phi / g (phi and g wrapped with their max-pool when
# sub-sampled), conv_out with its BatchNorm.
_MMACTION_NONLOCAL = re.compile(
    r"backbone\.(?P<block>layer\d+\.\d+)\.non_local_block\."
    r"(?:(?P<conv>theta|phi|g)(?:\.0)?\.conv|conv_out\.(?P<out>conv|bn))\.(?P<param>\w+)")
# MMAction2's data preprocessor normalises with ImageNet's mean and std x 255, as gdn does.
_MMACTION_NORM = {"data_preprocessor.mean": (123.675, 116.28, 103.53),
                  "data_preprocessor.std": (58.395, 57.12, 57.375)}


def mmaction_keys(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """MMAction2's TSN and TSM recognizer keys (1.x and 0.x: `{"meta", "state_dict"}`) ->
    torchvision's, and the blocks whose keys carry a shift.

    Its ResNet wraps each conv with its BatchNorm (`ConvModule`): `backbone.conv1.conv.*` ->
    `conv1.*`, `backbone.conv1.bn.*` -> `bn1.*`, `backbone.layerX.Y.convN.conv.*` ->
    `layerX.Y.convN.*` (TSM: `conv1.conv.net.*`, `.net` being the shift wrapper), `...convN.bn.*`
    -> `...bnN.*`, `downsample.conv/bn` -> `downsample.0/1`, `cls_head.fc_cls.*` -> `fc.*`; the
    non-local blocks of its I3D (`...non_local_block.theta.conv.*`, `phi.0.conv.*`, `g.0.conv.*`,
    `conv_out.conv/bn.*`) -> `...nonlocal_block.theta.*`, ..., `conv_out.*`, `bn_out.*`. The data
    preprocessor's mean and std (kept by unpublished checkpoints) are dropped when they are
    ImageNet's, an error otherwise. Keys of other networks (other heads, other blocks) keep their
    names, so that loading them fails.
    """
    renamed, shifted = {}, set()
    for k, v in state_dict.items():
        if k in _MMACTION_NORM:
            if v.numel() != 3 or not torch.allclose(v.flatten().float(), torch.tensor(_MMACTION_NORM[k]), atol=1e-3):
                raise WeightsMismatchError(f"{k} is {v.flatten().tolist()}, not ImageNet's {list(_MMACTION_NORM[k])}: "
                                           "gdn's models take ImageNet-normalised input")
            continue
        if k.startswith("cls_head.fc_cls."):
            renamed["fc." + k.removeprefix("cls_head.fc_cls.")] = v
            continue
        if nl := _MMACTION_NONLOCAL.fullmatch(k):
            part = nl["conv"] or {"conv": "conv_out", "bn": "bn_out"}[nl["out"]]
            renamed[f"{nl['block']}.nonlocal_block.{part}.{nl['param']}"] = v
            continue
        m = _MMACTION_KEY.fullmatch(k)
        if m is None or (m["kind"] == "conv.net" and m["part"] != "conv1"):
            renamed[k] = v
            continue
        bn = m["kind"] == "bn"
        if m["stem"]:
            name = "bn1" if bn else "conv1"
        elif m["part"] == "downsample":
            name = f"{m['block']}.downsample.{1 if bn else 0}"
        else:
            name = f"{m['block']}.{'bn' if bn else 'conv'}{m['part'][-1]}"
        if m["kind"] == "conv.net":
            shifted.add(m["block"])
        renamed[f"{name}.{m['param']}"] = v
    return renamed, shifted


PEER_KEYS: dict[str, Callable[[Mapping[str, torch.Tensor]], tuple[dict[str, torch.Tensor], set[str]]]] = {
    "tsm": tsm_keys, "mmaction": mmaction_keys}
"""The peers' formats: their keys -> (torchvision's keys, blocks with a shift wrapper)."""


def tsm_filter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The TSM repository's checkpoints: `tsm_keys`, then `_peer_filter`."""
    return _peer_filter(*tsm_keys(state_dict), model)


def mmaction_filter(state_dict: dict[str, torch.Tensor],
                    model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """MMAction2's TSN, TSM and I3D recognizers: `mmaction_keys`, then `_peer_filter`.

    Its I3D (`ResNet3d`) stores every conv as a Conv3d: the 5x7x7 stem and the 3x1x1 convs
    load as they are into gdn's 3D convs; a kernel one frame long (1x1x1, 1x3x3) loads into the
    per-frame 2D conv of the same place, its time axis dropped. A 1-frame kernel where gdn's
    conv is 3D (another inflation pattern) stays mis-shaped: an error, never an inflation.
    """
    out, random_by_design = _peer_filter(*mmaction_keys(state_dict), model)
    target = model.state_dict()
    for k, v in out.items():
        if v.dim() == 5 and v.shape[2] == 1 and k in target and target[k].dim() == 4:
            out[k] = v.squeeze(2)
    return out, random_by_design


@dataclass(frozen=True)
class WeightsFormat:
    """A source format: how to recognise its state dicts and how to map them onto a model.

    `detect(state_dict)` says whether a (cleaned) state dict is in this format; `filter` maps
    it (see the module docstring); `expects` describes its keys and `hint` the likely cause of
    a mismatch, for error messages. With `strict`, keys the model lacks or the source lacks
    (outside the classifier) are errors, otherwise they are reported and logged. With
    `head_may_differ`, a classifier of another shape (ImageNet's 1000 classes), or none in a
    strict format, is re-initialised without being asked.
    """

    detect: Callable[[Mapping[str, torch.Tensor]], bool]
    filter: Filter
    expects: str
    strict: bool = True
    head_may_differ: bool = False
    hint: str = "another architecture or model options?"


FORMATS: dict[str, WeightsFormat] = {
    "torchvision": WeightsFormat(
        _is_2d_resnet, torchvision_filter, strict=False, head_may_differ=True,
        expects="a 2D ResNet state dict under torchvision's names (conv1.weight, layer1.0.conv1.weight, fc.weight)",
        hint="2D ResNet weights of another depth or width? use weights of the same ResNet depth",
    ),
    "bninception": WeightsFormat(
        _is_bninception, bninception_filter, strict=False, head_may_differ=True,
        expects="BN-Inception / ECO under the TSN and ECO repositories' names (conv1_7x7_s2.weight, "
                "inception_3a_1x1_bn.running_mean, res3a_2.weight)",
        hint="an ECO of another width, or a BN-Inception of another layout?",
    ),
    "gdn": WeightsFormat(
        _is_video_resnet, gdn_filter,
        expects="the state dict of a gdn model (conv1.weight, layer1.0.conv2.st.weight, fc.weight)",
    ),
    # The peers' video checkpoints: exact fits (a classifier of another size is re-initialised,
    # as for ImageNet weights, when they initialise a model for another dataset).
    "tsm": WeightsFormat(
        lambda sd: "base_model.conv1.weight" in sd, tsm_filter, head_may_differ=True,
        expects="the TSM repository's keys (base_model.conv1.weight, base_model.layer1.0.conv1.net.weight, "
                "new_fc.weight)",
        hint="a TSM repository checkpoint of another depth, or with non-local blocks or shift place 'block'?",
    ),
    "mmaction": WeightsFormat(
        lambda sd: "backbone.conv1.conv.weight" in sd, mmaction_filter, head_may_differ=True,
        expects="MMAction2 TSN/TSM/I3D recognizer keys (backbone.conv1.conv.weight, backbone.layer1.0.conv1.bn.weight, "
                "cls_head.fc_cls.weight)",
        hint="an MMAction2 recognizer of another backbone (SlowFast, X3D, ...), depth or I3D inflation pattern?",
    ),
}
"""Source formats by name; `detect_format` tries them in this order."""


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first of `FORMATS` that recognises `state_dict` (cleaned of DDP
    prefixes), or None. A 2D ResNet under torchvision's names is "torchvision" (gdn's own 2D
    models included: their state dicts are torchvision's); other torchvision-named ResNets "gdn"."""
    return next((name for name, fmt in FORMATS.items() if fmt.detect(state_dict)), None)


# ---------------------------------------------------------------------------- loading
@dataclass
class WeightsReport:
    """What `load_weights` did with each key. Shapes are `(source shape, model shape)`."""

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    random_init: list[str] = field(default_factory=list)  # no source by design (temporal kernels)
    head_reset: list[str] = field(default_factory=list)  # classifier re-initialised
    missing: list[str] = field(default_factory=list)  # in the model, not in the source
    unexpected: list[str] = field(default_factory=list)  # in the source, not in the model
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.source}: loaded {len(self.loaded)} tensors ({self.format} format)"
        if self.random_init:
            text += f", {len(self.random_init)} random by design (temporal kernels)"
        if self.head_reset:
            text += f", re-initialised the head ({', '.join(self.head_reset)})"
        return text


def imagenet_url(depth: int | None) -> str:
    """torchvision's ImageNet weights of a ResNet of `depth` (for `pretrained="imagenet"`)."""
    if depth not in IMAGENET_URLS:
        raise WeightsMismatchError("no ImageNet weights URL for this model (only for ResNets of depth "
                                   f"{', '.join(map(str, IMAGENET_URLS))}); pass a state dict file")
    return IMAGENET_URLS[depth]


def load_weights(model: nn.Module, source: str | Path | Mapping, *, format: str | None = "gdn",
                 reset_head: bool = False, head: str = "fc", name: str | None = None) -> WeightsReport:
    """Copy the weights of `source` into `model`, through the filter of its format.

    Args:
        model: the model to initialise (e.g. fresh from `create_model`).
        source: a file (gdn checkpoint, plain or wrapped state dict), an http(s) URL, a
            checkpoint dict (with a "model" entry) or a state dict.
        format: a name of `FORMATS`, or None to detect it from the keys (`detect_format`).
            The default, "gdn", asks for an exact fit, as fine-tuning from a run needs.
        reset_head: re-initialise the classifier (`head`'s parameters) instead of loading it;
            needed when the source was trained for another class count.
        head: the name of the classifier module.
        name: how messages name an in-memory `source` (the file it was read from).

    Returns:
        A WeightsReport (loaded, random by design, re-initialised head, and the missing and
        unexpected keys a non-strict format tolerates; these are also logged).

    Raises:
        WeightsMismatchError, listing the keys, and changing nothing in `model`: when fewer than
            `MIN_MATCHED` of the model's tensors find a source (another format or network; the
            message shows example keys of both sides and the detected format); when a tensor
            outside the head is mis-shaped, or (strict formats) missing or unexpected; when the
            head differs and neither `reset_head` nor the format allows a reset.
        CheckpointError: the file is missing, corrupt or unsafe, or cannot be downloaded.
    """
    name, source_state = read_state_dict(source, name)
    detected = detect_format(source_state)
    fmt_name = format or detected or "gdn"
    if fmt_name not in FORMATS:
        raise ValueError(f"unknown weights format '{fmt_name}'; choose one of {', '.join(FORMATS)}")
    fmt = FORMATS[fmt_name]
    try:
        state, random_init = fmt.filter(source_state, model)
    except WeightsMismatchError as e:  # a filter names keys; the message names the source too
        raise WeightsMismatchError(f"{name}: {e}") from None
    target = model.state_dict()
    is_head = lambda k: k.startswith(f"{head}.")  # noqa: E731
    optional = lambda k: k.endswith("num_batches_tracked") or k in random_init  # noqa: E731

    report = WeightsReport(source=name, format=fmt_name, random_init=random_init)
    report.missing = [k for k in target if k not in state and not optional(k)]
    report.unexpected = [k for k in state if k not in target]
    report.mismatched = {k: (tuple(v.shape), tuple(target[k].shape)) for k, v in state.items()
                         if k in target and v.shape != target[k].shape}

    body = [k for k in target if not is_head(k) and not optional(k)]
    matched = [k for k in body if k in state and k not in report.mismatched]
    problems = [k for k in report.mismatched if not is_head(k)]
    if fmt.strict:
        problems += [k for k in report.missing + report.unexpected if not is_head(k)]
    head_mismatched = any(is_head(k) for k in report.mismatched)
    head_differs = head_mismatched or (fmt.strict and any(is_head(k) for k in report.missing + report.unexpected))
    reset = reset_head or (fmt.head_may_differ and head_differs)
    if len(matched) < MIN_MATCHED * len(body):  # another format or another network
        looks = f"; it looks like format '{detected}': pass format='{detected}'" if detected not in (None, fmt_name) else ""
        what = (f"matches almost nothing in this model: {len(matched)} of {len(body)} tensors found a source of "
                f"the right shape ({fmt.hint}). It holds {len(source_state)} tensors in format "
                f"'{detected or 'unknown'}', e.g. {_examples(list(source_state))}; format '{fmt_name}' expects "
                f"{fmt.expects}, here e.g. {_examples(list(target))}{looks}")
    elif problems:
        what = f"its parameters do not fit this model ({fmt.hint})"
    elif head_differs and not reset:
        what = (f"only the classifier '{head}' differs (another class count?); pass reset_head=True "
                "(model.reset_head: true) to re-initialise it")
    else:
        what = ""
    if what:
        shaped = [f"{k} {src} vs model {dst}" for k, (src, dst) in report.mismatched.items()]
        raise WeightsMismatchError(
            f"{name}: {what}"
            + (_listing("missing in the source", report.missing) if fmt.strict and report.missing else "")
            + (_listing("unexpected in the source", report.unexpected) if fmt.strict and report.unexpected else "")
            + (_listing("mis-shaped (source vs model)", shaped) if shaped else "")
        )

    keep = {k: v for k, v in state.items() if k in target and k not in report.mismatched
            and not (reset and is_head(k))}
    if reset:
        module = model.get_submodule(head)
        if not hasattr(module, "reset_parameters"):
            raise WeightsMismatchError(f"the model's '{head}' ({type(module).__name__}) cannot be re-initialised")
    model.load_state_dict(keep, strict=False)
    report.loaded = list(keep)
    if reset:
        module.reset_parameters()
        report.head_reset = [k for k in target if is_head(k)]
        report.missing = [k for k in report.missing if k not in report.head_reset]
    # Report, not only raise: a run's log should say what was reused and what was not.
    log.info("%s", report)
    if report.missing:
        log.warning("%d model tensors have no source in %s and keep their init: %s",
                    len(report.missing), name, ", ".join(report.missing[:10]))
    if report.unexpected:
        log.warning("%d tensors of %s were not used: %s", len(report.unexpected), name,
                    ", ".join(report.unexpected[:10]))
    return report
