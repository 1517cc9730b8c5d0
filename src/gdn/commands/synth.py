"""`gdn synth OUT`: write the synthetic Something-Something dataset (demo and tests)."""

from __future__ import annotations

import argparse
import time

from gdn.errors import UsageError
from gdn.data.synthetic import ALL_CLASSES, DEFAULT_PAIRS, PAIRS, generate

HELP = "write a synthetic Something-Something dataset (time-reversed class pairs) in the SSv1/SSv2 layout"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (the dataset root)")
    p.add_argument("--format", choices=("ssv2", "ssv1"), default="ssv2",
                   help="ssv2: VP9 .webm + JSON (default); ssv1: JPEG frame folders + CSV")
    p.add_argument("--classes", default=str(DEFAULT_PAIRS),
                   help=f"number of time-reversed pairs (1-{len(PAIRS)}, default {DEFAULT_PAIRS}) or "
                        f"comma-separated class names from: {'; '.join(ALL_CLASSES)}")
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--test-per-class", type=int, default=5)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--min-frames", type=int, default=24)
    p.add_argument("--max-frames", type=int, default=48)
    p.add_argument("--fps", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing synthetic dataset in OUT")


def run(args: argparse.Namespace) -> int:
    classes = int(args.classes) if args.classes.strip().isdigit() else [
        c.strip() for c in args.classes.split(",") if c.strip()
    ]
    start = time.perf_counter()
    try:
        summary = generate(
            args.out, format=args.format, classes=classes,
            train_per_class=args.train_per_class, val_per_class=args.val_per_class,
            test_per_class=args.test_per_class, height=args.height, width=args.width,
            min_frames=args.min_frames, max_frames=args.max_frames, fps=args.fps,
            seed=args.seed, workers=args.workers, overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as e:
        raise UsageError(str(e)) from None
    seconds = time.perf_counter() - start
    total = sum(summary.counts.values())

    print(f"{'index':>5}  {'class':<40}{'train':>7}{'val':>6}{'test':>6}")
    for index, name in enumerate(summary.classes):
        per_split = [sum(c.split == s and c.class_name == name for c in summary.clips)
                     for s in ("train", "validation", "test")]
        print(f"{index:>5}  {name:<40}{per_split[0]:>7}{per_split[1]:>6}{per_split[2]:>6}")
    c = summary.counts
    print(f"{'':>5}  {'total':<40}{c['train']:>7}{c['validation']:>6}{c['test']:>6}")
    print(f"\n{total} clips ({args.format}, {args.height}x{args.width}) in {summary.root} "
          f"in {seconds:.1f} s ({total / seconds:.0f} clips/s)")
    return 0
