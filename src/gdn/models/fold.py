"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm is a per-channel affine map, y = a * x + b with
a = gamma / sqrt(running_var + eps) and b = beta - a * running_mean, so it can be absorbed
by the conv that feeds it: the conv's weight rows are scaled by a and its bias becomes
a * bias + b. The folded model has the same outputs (to float rounding) without the
BatchNorm passes. It is eval-only (its state dict has conv biases and no BatchNorm entries).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gdn.models.layers import GDM, Conv2Plus1d


@torch.no_grad()
def _fold_into_conv(conv: nn.Conv2d | nn.Conv3d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """conv <- scale * conv + shift, per output channel."""
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    bias = shift if conv.bias is None else scale * conv.bias + shift
    conv.bias = nn.Parameter(bias.clone())


def _fold_into(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Absorb a per-output-channel affine map into any conv a conv maker builds."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        _fold_into_conv(module, scale, shift)
    elif isinstance(module, GDM):
        start = 0
        for group in (module.st, module.s, module.t):  # output channels in this order
            if group is not None:
                end = start + group.out_channels
                _fold_into_conv(group, scale[start:end], shift[start:end])
                start = end
    elif isinstance(module, Conv2Plus1d):
        _fold_into_conv(module.temporal, scale, shift)
    else:
        raise TypeError(
            f"fold_bn: cannot fold a BatchNorm into {type(module).__name__}; add a case to "
            f"gdn/models/fold.py:_fold_into for it"
        )


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    bn = getattr(parent, bn_name)
    if not isinstance(bn, nn.BatchNorm2d):
        return
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - scale * bn.running_mean
    _fold_into(getattr(parent, conv_name), scale.detach(), shift.detach())
    setattr(parent, bn_name, nn.Identity())


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every BatchNorm folded into the conv before it.

    Pairs folded: `convK`/`bnK` attributes of one module (the stem, every block), `spatial`/
    `bn` of a (2+1)D conv, and a conv followed by a BatchNorm in an `nn.Sequential` (the
    shortcut). The input model is not modified. Raises if a BatchNorm is left unfolded.
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d) and name.startswith("bn") and name[2:].isdigit():
                _fold_pair(module, f"conv{name[2:]}", name)
        if isinstance(module, Conv2Plus1d):
            _fold_pair(module, "spatial", "bn")
        if isinstance(module, nn.Sequential):
            for i in range(1, len(module)):
                if isinstance(module[i], nn.BatchNorm2d) and isinstance(module[i - 1], (nn.Conv2d, nn.Conv3d)):
                    _fold_pair(module, str(i - 1), str(i))
    left = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"fold_bn: no conv found before BatchNorm(s) {', '.join(left)}; they were not folded")
    return model
