"""`gdn predict CHECKPOINT VIDEO_OR_FOLDER...`: top-k classes of videos and frame folders.

Inputs that cannot be read are reported on stderr, one line each, and the others are still
processed; the exit code is then 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gdn.data.decode import DecodeError
from gdn.engine.predict import Predictor, expand_inputs, write_overlay
from gdn.errors import UsageError

HELP = "top-k class names and probabilities for video files or JPEG frame folders"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .pt file written by `gdn train` or `gdn convert`")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_FOLDER",
                   help="video files (webm/mp4/avi/mkv), JPEG frame folders, or folders of videos")
    p.add_argument("--topk", type=int, default=5, help="classes to show per input (default 5)")
    p.add_argument("--clips", type=int, default=1, help="temporal views averaged per video (default 1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--overlay", metavar="OUT.mp4",
                   help="write the input with the predictions drawn on it (several inputs: OUT-<name>.mp4)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of tables")


def _overlay_path(out: str, src: Path, many: bool) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}-{src.stem or src.name}{out.suffix or '.mp4'}") if many else out


def run(args: argparse.Namespace) -> int:
    if args.topk < 1 or args.clips < 1:
        raise UsageError("--topk and --clips must be >= 1")
    predictor = Predictor(args.checkpoint, device=args.device, clips=args.clips, compile=args.compile)
    paths = expand_inputs(args.inputs)
    ds = predictor.dataset(paths)
    results, failed = [], 0
    for i, path in enumerate(paths):
        try:
            pred = predictor.predict_item(ds, i, args.topk)
            if args.overlay:
                write_overlay(path, _overlay_path(args.overlay, path, len(paths) > 1), pred)
        except DecodeError as e:
            print("gdn predict: " + " ".join(str(e).split()), file=sys.stderr)  # one line
            failed += 1
            continue
        results.append(pred)
        if not args.json:
            _print_table(pred)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    return 2 if failed else 0


def _print_table(pred) -> None:
    print(pred.path)
    width = max(len(c) for _, c, _ in pred.topk)
    for rank, (_, name, p) in enumerate(pred.topk, 1):
        print(f"  {rank:>2}  {name:<{width}}  {100 * p:6.2f}%")
