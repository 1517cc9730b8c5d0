"""`gdn bench`: training and inference speed, latency and peak memory of models side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gdn.bench import BenchConfig, format_table, results_as_dicts, run_bench
from gdn.errors import UsageError

HELP = "speed (train/infer clips/s, CPU latency) and peak memory of models side by side, as ratios to TSN"
DEFAULT_MODELS = "gdn_r50,tsn_r50,tsm_r50,r3d_r50"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated names (default {DEFAULT_MODELS})")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=None, help="clips per batch (default 32 on CUDA, 2 on CPU)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is reported")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the convs for inference")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last activations (default: on for CUDA, off for CPU)")
    p.add_argument("--no-train", action="store_true", help="skip the training step")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: PyTorch's)")
    p.add_argument("--baseline", default=None, help="model the ratios refer to (default: the first tsn_*)")
    p.add_argument("--json", action="store_true", help="print a JSON list of result objects")
    p.add_argument("--save", type=Path, default=None, metavar="FILE",
                   help="also write the JSON list to FILE (the table still goes to the terminal)")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = BenchConfig(
            models=[m for m in args.models.split(",") if m], device=args.device, frames=args.frames,
            size=args.size, batch=args.batch or (32 if args.device.startswith("cuda") else 2),
            repeats=args.repeats, warmup=args.warmup, compile=args.compile, fold_bn=args.fold_bn,
            channels_last=args.channels_last, train=not args.no_train, baseline=args.baseline,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = run_bench(cfg)
    record = json.dumps(results_as_dicts(rows), indent=1)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(record + "\n")
    print(record if args.json else format_table(rows))
    return 0
