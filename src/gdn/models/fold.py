"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm is a per-channel affine map, y = a * x + b with
a = gamma / sqrt(running_var + eps) and b = beta - a * running_mean, so it can be absorbed
by the conv that feeds it: the conv's weight rows are scaled by a and its bias becomes
a * bias + b. The folded model has the same outputs (to float rounding) without the
BatchNorm passes. It is eval-only (its state dict has conv biases and no BatchNorm entries).

Plain `nn.Conv1d/2d/3d` are folded here; any other module that feeds a BatchNorm (the temporal
convs a conv maker builds) folds itself through its `fold_bn(scale, shift)` method, including
any BatchNorm inside it, so this file knows no module types of its own. A BatchNorm that follows
a sum rather than a conv (the pre-activation blocks of ECO's 3D part) has nothing to fold into:
the module that owns it names it in `preactivation_bns`, and it becomes its affine map
(`ChannelAffine`), one multiply-add instead of a BatchNorm pass.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd


@torch.no_grad()
def fold_into_conv(conv: _ConvNd, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """conv <- scale * conv + shift, per output channel (`scale`, `shift`: `(C_out,)`)."""
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    bias = shift if conv.bias is None else scale * conv.bias + shift
    conv.bias = nn.Parameter(bias.clone())


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of the eval-mode affine map of `bn`, detached, each `(C,)`."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - scale * bn.running_mean
    return scale.detach(), shift.detach()


class ChannelAffine(nn.Module):
    """`y = scale * x + shift` per channel (dim 1): an eval-mode BatchNorm with nothing to fold into."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        scale, shift = bn_affine(bn)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


def _foldable(module: nn.Module) -> bool:
    return isinstance(module, _ConvNd) or callable(getattr(module, "fold_bn", None))


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    conv = getattr(parent, conv_name)
    scale, shift = bn_affine(getattr(parent, bn_name))
    if callable(getattr(conv, "fold_bn", None)):
        conv.fold_bn(scale, shift)
    elif isinstance(conv, _ConvNd):
        fold_into_conv(conv, scale, shift)
    else:
        raise TypeError(
            f"fold_bn: cannot fold {bn_name} into {conv_name} ({type(conv).__name__}): give "
            f"{type(conv).__name__} a method fold_bn(scale, shift) that absorbs the BatchNorm's "
            "per-output-channel affine map y = scale * x + shift"
        )
    setattr(parent, bn_name, nn.Identity())


def _fold_children(parent: nn.Module) -> None:
    """Fold the conv/BatchNorm pairs among `parent`'s children, then recurse into the children
    that do not fold themselves."""
    children = dict(parent.named_children())
    if isinstance(parent, nn.Sequential):  # the shortcut: conv, BatchNorm
        names = list(children)
        pairs = [(a, b) for a, b in zip(names, names[1:])
                 if isinstance(children[b], nn.modules.batchnorm._BatchNorm) and _foldable(children[a])]
    else:  # convK / bnK of the stem and of every block (conv / bn, conv_out / bn_out alike)
        pairs = [(f"conv{name[2:]}", name) for name, child in children.items()
                 if isinstance(child, nn.modules.batchnorm._BatchNorm) and name.startswith("bn")
                 and f"conv{name[2:]}" in children and name not in getattr(parent, "preactivation_bns", ())]
    for conv_name, bn_name in pairs:
        _fold_pair(parent, conv_name, bn_name)
    for bn_name in getattr(parent, "preactivation_bns", ()):
        setattr(parent, bn_name, ChannelAffine(getattr(parent, bn_name)))
    for child in parent.children():
        if not callable(getattr(child, "fold_bn", None)):  # those own their insides
            _fold_children(child)


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every BatchNorm folded into the conv before it.

    Pairs folded: `convK`/`bnK` attributes of one module (the stem, every block; any suffix K,
    empty included) and a conv followed by a BatchNorm in an `nn.Sequential` (the shortcut).
    BatchNorms a module lists in `preactivation_bns` become `ChannelAffine`. A conv-maker module folds the
    BatchNorm after it, and those inside it, by its own `fold_bn(scale, shift)`. The input model
    is not modified. Raises if a BatchNorm is left unfolded, or if the module before one can
    neither be folded here nor fold itself.
    """
    model = copy.deepcopy(model).eval()
    _fold_children(model)
    left = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"fold_bn: no conv found before BatchNorm(s) {', '.join(left)}; they were not folded")
    return model
