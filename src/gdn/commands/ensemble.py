"""`gdn ensemble`: fuse the softmax scores of several models (the paper's GDN_En = 8f + 16f).

The inputs are score files written by `gdn test CKPT --scores FILE`. They must cover the same
videos with the same labels and class names; the fused score of a video is the (weighted)
average of its softmax scores.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from gdn.engine.evaluate import ScoreFile, ScoreFileError, compute_metrics, load_scores, save_scores

HELP = "average the saved softmax scores of several models (8f + 16f ensemble) and report accuracy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scores", nargs="+", metavar="SCORES", help="score files (.npz/.pt) from `gdn test --scores`")
    p.add_argument("--weights", type=float, nargs="+", metavar="W", help="one weight per file (default: equal)")
    p.add_argument("--out", metavar="FILE", help="save the fused scores (.npz or .pt)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def fuse(files: list[ScoreFile], paths: list[str], weights: list[float] | None = None) -> ScoreFile:
    """Weighted average of softmax scores, aligned by video id to the first file.

    Raises ScoreFileError naming the offending file when a file covers other videos, gives a
    video another label, or has other class names.
    """
    if weights is None:
        weights = [1.0] * len(files)
    if len(weights) != len(files):
        raise ValueError(f"--weights: got {len(weights)} weights for {len(files)} score files; give one per file")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--weights must be >= 0 with a positive sum, got {weights}")
    ref, ref_path = files[0], paths[0]
    position = {vid: i for i, vid in enumerate(ref.video_ids)}
    if len(position) != len(ref.video_ids):
        raise ScoreFileError(f"{ref_path}: repeated video ids; re-create it with `gdn test --scores`")
    total = np.zeros_like(ref.scores, dtype=np.float64)
    for f, path, w in zip(files, paths, weights):
        if f.classes != ref.classes:
            diff = next((i for i, (a, b) in enumerate(zip(f.classes, ref.classes)) if a != b), None)
            where = (f"class {diff} is '{f.classes[diff]}' there but '{ref.classes[diff]}' in {ref_path}"
                     if diff is not None else f"{len(f.classes)} classes vs {len(ref.classes)} in {ref_path}")
            raise ScoreFileError(f"{path}: class names differ ({where}); ensemble models trained on the same labels")
        ids = set(f.video_ids)
        missing = [v for v in ref.video_ids if v not in ids]
        extra = [v for v in f.video_ids if v not in position]
        if missing or extra or len(ids) != len(f.video_ids):
            raise ScoreFileError(
                f"{path}: video ids do not match {ref_path} ({len(missing)} missing, e.g. {missing[:3]}; "
                f"{len(extra)} extra, e.g. {extra[:3]}; {len(f.video_ids) - len(ids)} repeated); "
                "score all models on the same split"
            )
        order = np.array([position[v] for v in f.video_ids])  # row i of f is video order[i] of ref
        if not np.array_equal(ref.labels[order], f.labels):
            bad = int(np.flatnonzero(ref.labels[order] != f.labels)[0])
            raise ScoreFileError(
                f"{path}: video '{f.video_ids[bad]}' has label {int(f.labels[bad])} there but "
                f"{int(ref.labels[order][bad])} in {ref_path}; score all models on the same annotations"
            )
        total[order] += w * f.scores
    return ScoreFile(video_ids=list(ref.video_ids), labels=ref.labels.copy(),
                     scores=(total / sum(weights)).astype(np.float32), classes=list(ref.classes))


def _row(name: str, f: ScoreFile) -> dict:
    m = compute_metrics(f.scores, f.labels, len(f.classes))
    return {"name": name, "top1": m["top1"], "top5": m["top5"],
            "mean_class_accuracy": m["mean_class_accuracy"], "num_videos": m["num_videos"]}


def run(args: argparse.Namespace) -> int:
    try:
        files = [load_scores(p) for p in args.scores]
        fused = fuse(files, args.scores, args.weights)
        if args.out:
            save_scores(args.out, fused)
    except (ScoreFileError, ValueError) as e:
        print(f"gdn ensemble: error: {e}", file=sys.stderr)
        return 2
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
