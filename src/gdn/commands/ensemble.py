"""`gdn ensemble`: fuse the softmax scores of several models (the paper's GDN_En = 8f + 16f).

The inputs are score files written by `gdn test CKPT --scores FILE`. They must cover the same
videos with the same labels and class names; the fused score of a video is the (weighted)
average of its softmax scores.
"""

from __future__ import annotations

import argparse
import json


from gdn.engine.evaluate import ScoreFile, compute_metrics, fuse, load_scores, save_scores

HELP = "average the saved softmax scores of several models (8f + 16f ensemble) and report accuracy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scores", nargs="+", metavar="SCORES", help="score files (.npz/.pt) from `gdn test --scores`")
    p.add_argument("--weights", type=float, nargs="+", metavar="W", help="one weight per file (default: equal)")
    p.add_argument("--out", metavar="FILE", help="save the fused scores (.npz or .pt)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _row(name: str, f: ScoreFile) -> dict:
    m = compute_metrics(f.scores, f.labels, len(f.classes))
    return {"name": name, "top1": m["top1"], "top5": m["top5"],
            "mean_class_accuracy": m["mean_class_accuracy"], "num_videos": m["num_videos"]}


def run(args: argparse.Namespace) -> int:
    files = [load_scores(p) for p in args.scores]
    fused = fuse(files, args.scores, args.weights)
    if args.out:
        save_scores(args.out, fused)
    rows = [_row(p, f) for p, f in zip(args.scores, files)]
    result = _row("ensemble", fused)
    weights = args.weights or [1.0] * len(files)
    if args.json:
        print(json.dumps({"top1": result["top1"], "top5": result["top5"],
                          "mean_class_accuracy": result["mean_class_accuracy"],
                          "num_videos": result["num_videos"], "weights": weights,
                          "models": rows, "out": args.out}))
        return 0
    width = max(len("ensemble"), *(len(r["name"]) for r in rows))
    print(f"{'scores':<{width}}  {'weight':>6}  {'top1':>6}  {'top5':>6}  {'mean cls':>8}  {'videos':>6}")
    for r, w in zip([*rows, result], [f"{w:.2f}" for w in weights] + [""]):
        print(f"{r['name']:<{width}}  {w:>6}  {r['top1']:>6.2f}  {r['top5']:>6.2f}  "
              f"{r['mean_class_accuracy']:>8.2f}  {r['num_videos']:>6d}")
    if args.out:
        print(f"fused scores: {args.out}")
    return 0
