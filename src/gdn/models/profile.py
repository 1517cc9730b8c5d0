"""Parameter and multiply-accumulate counts (the "GFLOPs" of the video literature are MACs).

Counting runs on the meta device: no memory, no compute, any model size.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from gdn.models.layers import conv_maker
from gdn.models.registry import create_model


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: torch.nn.Module, frames: int, size: int, batch: int = 1) -> float:
    """Multiply-accumulates (x1e9) of one forward pass on `batch` clips of frames x size x size.

    torch.utils.flop_counter counts 2 FLOPs per MAC; the result is divided by 2.
    """
    device = next(model.parameters()).device
    x = torch.empty(batch, 3, frames, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() / 2 / 1e9


def profile_model(name: str, frames: int, size: int, num_classes: int = 174, **overrides) -> dict:
    """{"model", "frames", "size", "params", "gmacs"} of a named model, built on the meta device."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **overrides)
    return {
        "model": name,
        "frames": frames,
        "size": size,
        "params": count_params(model),
        "gmacs": round(count_gmacs(model, frames, size), 3),
    }


# Table 1 of the paper: weights of one 3x3 block as a multiple of C_in * C_out.
TABLE1_PAPER = {"C2D": 9.0, "C3D": 27.0, "P3D": 12.0, "GST": 9.0, "GDM": 33 / 8}
TABLE1_MAKERS = {"C2D": "2d", "C3D": "3d", "P3D": "2plus1d", "GST": "gst", "GDM": "gdm"}  # CONV_MAKERS names


def block_weight_factors(channels: int = 256) -> dict[str, float]:
    """Measured conv weights of each maker's 3x3 block divided by C_in * C_out (BatchNorm of
    the (2+1)D middle layer excluded, as in Table 1)."""
    factors = {}
    for label, kind in TABLE1_MAKERS.items():
        with torch.device("meta"):
            conv = conv_maker(kind)(channels, channels, 1)
        weights = sum(p.numel() for n, p in conv.named_parameters() if n.endswith("weight") and p.dim() > 1)
        factors[label] = weights / (channels * channels)
    return factors
