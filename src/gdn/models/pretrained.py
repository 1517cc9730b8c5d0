"""ImageNet initialisation of the video ResNets from torchvision-format 2D ResNet weights.

Paper section 3.2: the spatial group of each GDM takes its slice of the 2D 3x3 kernel, the
spatio-temporal group the same kind of slice inflated over time as in I3D (repeat, divide by
3), the temporal group keeps its random initialisation. Stem, 1x1 convs, downsampling and
BatchNorm copy exactly; the classifier is dropped when the class count differs. Every key that
is not loaded is reported (logged and returned), never silently ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# torchvision's ImageNet ResNet weights (IMAGENET1K_V1), for users who are online.
IMAGENET_URLS = {
    18: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    34: "https://download.pytorch.org/models/resnet34-b627a593.pth",
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    101: "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}


@dataclass
class LoadReport:
    """What `load_imagenet` did with each key."""

    loaded: list[str] = field(default_factory=list)
    random_init: list[str] = field(default_factory=list)  # by design (temporal kernels)
    head_reset: list[str] = field(default_factory=list)  # fc with another class count
    missing: list[str] = field(default_factory=list)  # model keys with no source
    unexpected: list[str] = field(default_factory=list)  # source keys nothing used


def read_state_dict(source: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision-format state dict from a file or URL; unwraps `state_dict`/`model` and a
    DataParallel `module.` prefix."""
    source = str(source)
    if source.startswith(("http://", "https://")):
        sd = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights '{path}' not found: give a torchvision ResNet state dict file, a URL or 'imagenet'")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"cannot read pretrained weights '{path}': {e}") from e
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise ValueError(f"pretrained weights '{source}' hold a {type(sd).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_imagenet(model: nn.Module, source: str | Path, depth: int | None = None) -> LoadReport:
    """Initialise `model` from 2D ImageNet ResNet weights (a file, a URL, or "imagenet").

    Raises ValueError when a backbone tensor has a shape that no rule maps (wrong depth or
    width): loading such weights would silently leave the model half random.
    """
    if source == "imagenet":
        if depth not in IMAGENET_URLS:
            raise ValueError(f"no ImageNet weights for this model (depth {depth}); pass a state dict file")
        source = IMAGENET_URLS[depth]
    sd = read_state_dict(source)
    report = LoadReport()
    own = model.state_dict()
    handled: set[str] = set()
    used: set[str] = set()
    mismatched: list[str] = []

    # 3x3 convs built by conv makers know how to take a 2D kernel (slice, inflate, copy).
    for name, module in model.named_modules():
        if not hasattr(module, "init_from_2d"):
            continue
        key = f"{name}.weight"
        own_keys = [k for k in own if k.startswith(f"{name}.")]
        if key not in sd:
            continue  # reported as missing below
        used.add(key)
        try:
            random_parts = module.init_from_2d(sd[key].float())
        except RuntimeError as e:  # a shape no slice or inflation fits
            mismatched.append(f"{key}: {e}")
            continue
        for k in own_keys:
            handled.add(k)
            if k.removeprefix(f"{name}.") in random_parts:
                report.random_init.append(k)
            elif not k.endswith("num_batches_tracked"):
                report.loaded.append(k)

    new_state = {}
    for k, v in own.items():
        if k in handled:
            continue
        if k not in sd:
            report.missing.append(k)
            continue
        used.add(k)
        src = sd[k]
        if src.shape == v.shape:
            new_state[k] = src
            report.loaded.append(k)
        elif k.startswith("fc."):
            report.head_reset.append(k)
        else:
            mismatched.append(f"{k}: model {tuple(v.shape)}, weights {tuple(src.shape)}")
    if mismatched:
        raise ValueError(
            f"pretrained weights '{source}' do not fit this model ({len(mismatched)} tensors): "
            + "; ".join(mismatched[:5]) + " - use weights of the same ResNet depth"
        )
    model.load_state_dict(new_state, strict=False)
    report.unexpected = sorted(k for k in sd if k not in used)
    # BatchNorm of the (2+1)D middle layer has no 2D counterpart: keep its default init.
    report.missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]

    log.info("ImageNet init from %s: %d tensors loaded, %d random by design (temporal kernels)",
             source, len(report.loaded), len(report.random_init))
    if report.head_reset:
        log.info("classifier re-initialised (class count differs): %s", ", ".join(report.head_reset))
    if report.missing:
        log.warning("%d model tensors have no ImageNet source and keep their init: %s",
                    len(report.missing), ", ".join(report.missing[:10]))
    if report.unexpected:
        log.warning("%d tensors of '%s' were not used: %s", len(report.unexpected), source,
                    ", ".join(report.unexpected[:10]))
    return report
