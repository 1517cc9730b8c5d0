"""`gdn demo`: train gdn_tiny and tsn_tiny on the synthetic time-reversal dataset with one budget
and compare them side by side (see `gdn.engine.demo`)."""

from __future__ import annotations

import argparse
import sys

from gdn.errors import UsageError
from gdn.engine.demo import TARGET_TOP1, format_table, run_demo

HELP = "GDN vs TSN on synthetic time-reversed actions: same budget, minutes on a CPU"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo); the data is cached in OUT/data")
    p.add_argument("--epochs", type=int, help="training epochs of both models (default: the demo recipe's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quick", action="store_true", help="a very short smoke run of every step (tests)")


def run(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be >= 1")
    summary = run_demo(args.out, epochs=args.epochs, device=args.device, quick=args.quick)
    print(format_table(summary))
    print(f"\nreport: {args.out}/report.md  (curves.png, confusion_*.png, demo.json)   "
          f"total {summary['total_seconds']:.0f} s")
    if summary["quick"]:
        return 0
    if not summary["passed"]:
        gdn = summary["models"][0]
        print(f"gdn demo: FAILED: gdn_tiny reached {gdn['top1']:.2f}% validation top-1, below the "
              f"{TARGET_TOP1:.0f}% bar; a change to the model, data or training broke the demo "
              f"(see {args.out}/report.md and {args.out}/gdn_tiny/metrics.jsonl)", file=sys.stderr)
        return 1
    return 0
