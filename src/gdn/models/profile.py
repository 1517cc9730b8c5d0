"""Parameter and multiply-accumulate counts (the "GFLOPs" of the video literature are MACs).

Counting runs on the meta device: no memory, no compute, any model size.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# Table 2 of the paper: the systems it compares, their published size and cost, and the gdn
# models that build them. The class counts are the ones that give the paper's parameter counts:
# 400 (Kinetics) for TSN, TSM, ECO and I3D, 174 (Something-Something) for GDN.
I3D_SSV1 = {"temporal_strides": (1, 1, 2), "res5_stride": 1}
"""Wang and Gupta's Something-Something I3D (ECCV 2018): res5 gives 16x14x14 for 32 frames."""


@dataclass(frozen=True)
class PaperRow:
    """One row of Table 2: the paper's figures and the gdn models of the system. Several
    members form a score ensemble (their parameters and MACs add up); none: no gdn model."""

    method: str
    frames: str
    paper_params_m: float
    paper_gflops: float | None
    members: tuple[tuple[str, int, dict], ...]
    num_classes: int = 400
    size: int = 224


TABLE2 = (
    PaperRow("TSN", "8", 24.3, 33, (("tsn_r50", 8, {}),)),
    PaperRow("ECO", "8", 47.5, 32, (("eco_full", 8, {}),)),
    PaperRow("ECO", "16", 47.5, 64, (("eco_full", 16, {}),)),
    PaperRow("ECO_En Lite", "92", 150, 267, tuple(("eco_lite", f, {}) for f in (16, 20, 24, 32))),
    PaperRow("I3D", "32 x 2 clips", 28.0, 153, (("i3d_r50", 32, I3D_SSV1),)),
    PaperRow("NL I3D", "32 x 2 clips", 35.3, 168, (("i3d_nl_r50", 32, I3D_SSV1),)),
    PaperRow("NL I3D + GCN", "32 x 2 clips", 62.2, None, ()),
    PaperRow("TSM", "8", 24.3, 33, (("tsm_r50", 8, {}),)),
    PaperRow("TSM", "16", 24.3, 65, (("tsm_r50", 16, {}),)),
    PaperRow("TSM_En", "8+16", 48.6, 98, (("tsm_r50", 8, {}), ("tsm_r50", 16, {}))),
    PaperRow("GDN", "8", 17.7, 26, (("gdn_r50", 8, {}),), num_classes=174),
    PaperRow("GDN", "16", 17.7, 52, (("gdn_r50", 16, {}),), num_classes=174),
    PaperRow("GDN_En", "8+16", 35.4, 78, (("gdn_r50", 8, {}), ("gdn_r50", 16, {})), num_classes=174),
)


def table2_rows(methods: set[str] | None = None) -> list[dict]:
    """Each `TABLE2` row (of `methods`, or all) with our counts: `params` (sum over the members),
    `gmacs` (per clip, summed over the members), `models` (how to build them); None where there
    is no model."""
    rows = []
    for row in TABLE2:
        if methods is not None and row.method not in methods:
            continue
        profiles = [profile_model(name, frames, row.size, num_classes=row.num_classes, **options)
                    for name, frames, options in row.members]
        models = " + ".join(f"{name} {frames}f" + "".join(f" {k}={v}" for k, v in options.items())
                            for name, frames, options in row.members)
        rows.append({
            "method": row.method, "frames": row.frames, "num_classes": row.num_classes, "size": row.size,
            "paper_params_m": row.paper_params_m, "paper_gflops": row.paper_gflops, "models": models or None,
            "params": sum(p["params"] for p in profiles) if profiles else None,
            "gmacs": round(sum(p["gmacs"] for p in profiles), 3) if profiles else None,
        })
    return rows
