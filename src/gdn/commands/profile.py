"""`gdn profile`: parameters and GMACs of named models, and the per-block weights of Table 1."""

from __future__ import annotations

import argparse
import json

from gdn.errors import UsageError
from gdn.models.profile import TABLE1_PAPER, block_weight_factors, profile_model, table2_rows
from gdn.models.registry import list_models

HELP = "parameters and GMACs (multiply-accumulates) of models at several frame counts and sizes"
DEFAULT_MODELS = "gdn_r50,tsn_r50,tsm_r50,r3d_r50,r2plus1d_r50,gst_r50,s3d_r50"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated names (default {DEFAULT_MODELS})")
    p.add_argument("--frames", default="8,16", help="comma-separated frame counts")
    p.add_argument("--sizes", default="224,112", help="comma-separated input sizes")
    p.add_argument("--num-classes", type=int, default=174)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of tables")
    p.add_argument("--table2", action="store_true",
                   help="the systems of the paper's Table 2 at its frames and size, beside its figures "
                        "(--models, --frames, --sizes and --num-classes do not apply)")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _table2(as_json: bool) -> int:
    rows = table2_rows()
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'method':<14}{'frames':>14}{'classes':>8}{'params (M)':>11}{'paper':>7}{'GMACs':>9}{'paper':>7}  models")
    for r in rows:
        params = f"{r['params'] / 1e6:.2f}" if r["params"] is not None else "-"
        gmacs = f"{r['gmacs']:.1f}" if r["gmacs"] is not None else "-"
        paper_gflops = f"{r['paper_gflops']:g}" if r["paper_gflops"] is not None else "-"
        print(f"{r['method']:<14}{r['frames']:>14}{r['num_classes']:>8}{params:>11}{r['paper_params_m']:>7g}"
              f"{gmacs:>9}{paper_gflops:>7}  {r['models'] or 'no model (needs an object detector)'}")
    print("\nGMACs per clip at 224 x 224 (the paper's GFLOPs are multiply-accumulates); ensembles add their "
          "members. Why rows differ: docs/results.md")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.table2:
        return _table2(args.json)
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
