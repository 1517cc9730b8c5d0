"""`gdn profile`: parameters and GMACs of named models, and the per-block weights of Table 1."""

from __future__ import annotations

import argparse
import json

from gdn.errors import UsageError
from gdn.models.profile import TABLE1_PAPER, block_weight_factors, profile_model
from gdn.models.registry import list_models

HELP = "parameters and GMACs (multiply-accumulates) of models at several frame counts and sizes"
DEFAULT_MODELS = "gdn_r50,tsn_r50,tsm_r50,r3d_r50,r2plus1d_r50,gst_r50,s3d_r50"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated names (default {DEFAULT_MODELS})")
    p.add_argument("--frames", default="8,16", help="comma-separated frame counts")
    p.add_argument("--sizes", default="224,112", help="comma-separated input sizes")
    p.add_argument("--num-classes", type=int, default=174)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of tables")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def run(args: argparse.Namespace) -> int:
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise UsageError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}")
    rows = [
        profile_model(name, frames, size, num_classes=args.num_classes)
        for name in names for frames in _ints(args.frames) for size in _ints(args.sizes)
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':<16}{'frames':>7}{'size':>6}{'params (M)':>12}{'GMACs':>9}")
    for r in rows:
        print(f"{r['model']:<16}{r['frames']:>7}{r['size']:>6}{r['params'] / 1e6:>12.2f}{r['gmacs']:>9.2f}")
    print("\nTable 1: weights of one 3x3 block / (C_in x C_out)")
    print(f"{'block':<8}{'ours':>8}{'paper':>8}")
    for label, factor in block_weight_factors().items():
        print(f"{label:<8}{factor:>8.3f}{TABLE1_PAPER[label]:>8.3f}")
    return 0
