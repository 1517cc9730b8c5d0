"""Named models: `create_model(name, ...)` and `list_models()`, used by the CLI, the tests
and the benchmarks alike. Each entrypoint is a few lines that fix the architecture; an
explicit `conv_makers=` overrides the family's default makers (torchvision's
`VideoResNet(conv_makers=...)`), so a new temporal conv runs in every ResNet family."""

from __future__ import annotations

import fnmatch
import inspect
import typing
from collections.abc import Callable
from functools import partial

from torch import nn

from gdn.models.eco import ECO
from gdn.models.i3d import NONLOCAL_BLOCKS, I3DResNet
from gdn.models.layers import GDM, TSM, Conv2Plus1d, Maker
from gdn.models.resnet import VideoResNet
from gdn.models.weights import imagenet_url, load_weights

_MODELS: dict[str, Callable[..., nn.Module]] = {}

# depth -> (block, blocks per stage)
RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
# The demo size: trains in minutes on a 2-core CPU.
TINY = dict(block="basic", layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16)
I3D_TINY = dict(layers=(1, 1, 1, 1), inflate=((1,), (1,), (1,), (1,)), widths=(8, 16, 32, 64), stem_width=16,
                temporal_strides=(1, 1, 2))
ECO_TINY_WIDTH = 0.125  # every channel count / 8: the 3D part at 16/32/64 like the tiny ResNets' last stages


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, num_classes: int = 174, pretrained: str | None = None, **overrides) -> nn.Module:
    """Build a named model.

    Args:
        name: one of `list_models()`.
        num_classes: classifier size (174 for Something-Something).
        pretrained: weights to start from: a state dict or checkpoint file (gdn's, or a TSN/TSM
            checkpoint of the TSM repository or MMAction2), an http(s) URL, or "imagenet" for
            torchvision's ResNet weights of the same depth (online). The format is detected
            from the keys (`gdn.models.weights.detect_format`): 2D ResNet weights are sliced and
            inflated into the temporal convs (section 3.2); BN-Inception / ECO weights of the
            TSN and ECO repositories fill ECO; the classifier of ImageNet or peer weights for
            another class count is re-initialised.
        overrides: keyword arguments of the entrypoint and of the class it builds
            (`VideoResNet`, `I3DResNet`, `ECO`: dropout, zero_init_residual, r_st, r_s, widths,
            nonlocal_blocks, temporal_strides, ...). For the ResNet families `conv_makers` (one
            conv maker per stage, or one for all) replaces the family's own makers; r_st / r_s
            only shape the default GDM maker.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")
    model = _MODELS[name](num_classes=num_classes, **overrides)
    if pretrained:
        source = imagenet_url(_depth_of(name)) if pretrained == "imagenet" else pretrained
        load_weights(model, source, format=None)
    return model


def model_options(name: str) -> list[str]:
    """The keyword arguments `create_model(name, ...)` accepts (its entrypoint's, and those of
    the class it returns when the entrypoint passes keywords on), for checking a config's
    `model.options` before anything is built."""
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")
    entrypoint = _MODELS[name]
    params = inspect.signature(entrypoint).parameters
    names = {k for k, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        names |= set(inspect.signature(typing.get_type_hints(entrypoint)["return"]).parameters)
    return sorted(names - {"num_classes"})


def _depth_of(name: str) -> int | None:
    suffix = name.rsplit("_r", 1)[-1]
    return int(suffix) if suffix.isdigit() else None


def _resnet(depth: int, makers, **kwargs) -> VideoResNet:
    """A ResNet of `depth` whose conv makers are `makers` unless `conv_makers` is given."""
    block, layers = RESNET_DEPTHS[depth]
    return VideoResNet(block, layers, **{"conv_makers": makers, **kwargs})


def _tiny(makers, **kwargs) -> VideoResNet:
    return VideoResNet(**{"conv_makers": makers, **TINY, **kwargs})


def _gdm(r_st: float, r_s: float) -> Maker:
    return partial(GDM, r_st=r_st, r_s=r_s)


# GDN (the paper): every 3x3 conv is a GDM, r_st = 1/4, r_s = 1/2.
@register_model
def gdn_r18(r_st: float = 0.25, r_s: float = 0.5, **kw) -> VideoResNet:
    return _resnet(18, _gdm(r_st, r_s), **kw)


@register_model
def gdn_r34(r_st: float = 0.25, r_s: float = 0.5, **kw) -> VideoResNet:
    return _resnet(34, _gdm(r_st, r_s), **kw)


@register_model
def gdn_r50(r_st: float = 0.25, r_s: float = 0.5, **kw) -> VideoResNet:
    return _resnet(50, _gdm(r_st, r_s), **kw)


@register_model
def gdn_r101(r_st: float = 0.25, r_s: float = 0.5, **kw) -> VideoResNet:
    return _resnet(101, _gdm(r_st, r_s), **kw)


# Baselines of Table 2.
@register_model
def tsn_r18(**kw) -> VideoResNet:
    return _resnet(18, "2d", **kw)


@register_model
def tsn_r50(**kw) -> VideoResNet:
    return _resnet(50, "2d", **kw)


@register_model
def tsn_r101(**kw) -> VideoResNet:
    return _resnet(101, "2d", **kw)


# TSM: `fold_div` is the peers' `shift_div` (1/fold_div of the channels moves each way).
@register_model
def tsm_r18(fold_div: int = 8, **kw) -> VideoResNet:
    return _resnet(18, TSM(fold_div), **kw)


@register_model
def tsm_r50(fold_div: int = 8, **kw) -> VideoResNet:
    return _resnet(50, TSM(fold_div), **kw)


@register_model
def tsm_r101(fold_div: int = 8, **kw) -> VideoResNet:
    """As the TSM repository and MMAction2 build it: a shift in every second block of each stage."""
    return _resnet(101, TSM(fold_div, every=2), **kw)


@register_model
def r3d_r50(**kw) -> VideoResNet:
    return _resnet(50, "3d", **kw)


@register_model
def r2plus1d_r50(mid_planes: int | str | None = None, **kw) -> VideoResNet:
    """P3D width by default; mid_planes="matched" for R(2+1)D's parameter-matched width."""
    return _resnet(50, partial(Conv2Plus1d, mid_planes=mid_planes), **kw)


@register_model
def gst_r50(**kw) -> VideoResNet:
    return _resnet(50, "gst", **kw)


@register_model
def s3d_r50(**kw) -> VideoResNet:
    """S3D-style (Xie et al. 2018, "top-heavy"): 2D convs in the low stages, 3D in the high."""
    return _resnet(50, ("2d", "2d", "3d", "3d"), **kw)


# Demo-sized variants, every family at the same widths.
@register_model
def gdn_tiny(r_st: float = 0.25, r_s: float = 0.5, **kw) -> VideoResNet:
    return _tiny(_gdm(r_st, r_s), **kw)


@register_model
def tsn_tiny(**kw) -> VideoResNet:
    return _tiny("2d", **kw)


@register_model
def tsm_tiny(**kw) -> VideoResNet:
    return _tiny("shift", **kw)


@register_model
def r3d_tiny(**kw) -> VideoResNet:
    return _tiny("3d", **kw)


@register_model
def r2plus1d_tiny(**kw) -> VideoResNet:
    return _tiny("2plus1d", **kw)


@register_model
def gst_tiny(**kw) -> VideoResNet:
    return _tiny("gst", **kw)


@register_model
def s3d_tiny(**kw) -> VideoResNet:
    return _tiny(("2d", "2d", "3d", "3d"), **kw)


# The non-local paper's I3D ResNet-50 (Table 2's I3D and NL I3D), `i3d.py`.
@register_model
def i3d_r50(**kw) -> I3DResNet:
    """MMAction2's / the non-local paper's Kinetics setting by default; Table 2's setting is
    `temporal_strides=(1, 1, 2), res5_stride=1` (see `gdn.models.i3d`)."""
    return I3DResNet(**kw)


@register_model
def i3d_nl_r50(**kw) -> I3DResNet:
    return I3DResNet(**{"nonlocal_blocks": NONLOCAL_BLOCKS, **kw})


@register_model
def i3d_tiny(**kw) -> I3DResNet:
    """One bottleneck per stage, every one inflated; the non-local repository's strides for
    8-frame clips (res2 at T, res3-res5 at T/2)."""
    return I3DResNet(**{**I3D_TINY, **kw})


@register_model
def i3d_nl_tiny(**kw) -> I3DResNet:
    return I3DResNet(**{**I3D_TINY, "nonlocal_blocks": ((), (0,), (0,), ()), **kw})


# ECO (Zolfaghari et al., ECCV 2018): BN-Inception per frame + a 3D ResNet-18 part, `eco.py`.
@register_model
def eco_lite(**kw) -> ECO:
    return ECO(full=False, **kw)


@register_model
def eco_full(**kw) -> ECO:
    return ECO(full=True, **kw)


@register_model
def eco_lite_tiny(**kw) -> ECO:
    return ECO(**{"full": False, "width": ECO_TINY_WIDTH, **kw})


@register_model
def eco_full_tiny(**kw) -> ECO:
    return ECO(**{"full": True, "width": ECO_TINY_WIDTH, **kw})
