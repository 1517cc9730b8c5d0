"""`gdn predict CHECKPOINT VIDEO_OR_FOLDER...`: top-k classes of videos and frame folders, of
the windows of long videos, or of a live stream.

- Whole videos (the default): one clip per video, as `gdn test` samples it.
- `--window W [--stride S]` (seconds, or frames with an `f` suffix: `64f`): one prediction per
  window, each window sampled as the model was trained (T segments over the window); the last
  partial window ends at the last frame (`gdn.data.windows`). A table, `--json`/`--csv` files, a
  `--timeline` PNG and an `--overlay` video with the current label and a timeline bar.
- `--source URL`: a live source (rtsp/http/udp/tcp URL, `/dev/video0 --format v4l2`, a named
  pipe, `-` for standard input): one JSON line on stdout every stride, scores averaged over the
  last `--smooth` windows; ends at the end of the stream or on Ctrl-C.

Inputs that cannot be read are reported on stderr, one line each, and the others are still
processed; the exit code is then 2. A live source that stalls or drops is one line, exit 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from gdn.data.decode import DecodeError
from gdn.data.windows import Span
from gdn.engine.predict import Prediction, Predictor, expand_inputs
from gdn.engine.render import save_timeline, write_overlay
from gdn.errors import UsageError

HELP = "top-k classes of videos, of the windows of long videos, or of a live stream"


def _span(text: str) -> Span:
    try:
        return Span.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .pt file written by `gdn train` or `gdn convert`")
    p.add_argument("inputs", nargs="*", metavar="VIDEO_OR_FOLDER",
                   help="video files (webm/mp4/avi/mkv), JPEG frame folders, or folders of videos")
    p.add_argument("--topk", type=int, default=5, help="classes to show per input or window (default 5)")
    p.add_argument("--clips", type=int, default=1, help="temporal views averaged per video or window (default 1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (frozen weights): the first "
                   "batch compiles for a minute or more on a CPU, so it pays off over many clips, not one video")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE.json",
                   help="JSON on stdout instead of the tables, or (with FILE.json) into that file")
    p.add_argument("--overlay", metavar="OUT.mp4",
                   help="write the input with the predictions drawn on it, its audio kept "
                        "(several inputs: OUT-<name>.mp4)")
    w = p.add_argument_group("long videos")
    w.add_argument("--window", type=_span, metavar="SPAN",
                   help="predict per window of this length: seconds ('4', '2.5s') or frames ('64f')")
    w.add_argument("--stride", type=_span, metavar="SPAN",
                   help="time between the starts of two windows (default: the window)")
    w.add_argument("--csv", metavar="FILE.csv", help="window predictions as CSV, one row per class shown")
    w.add_argument("--timeline", metavar="FILE.png",
                   help="a PNG of the classes over time (several inputs: FILE-<name>.png)")
    s = p.add_argument_group("live sources (JSON lines on stdout)")
    s.add_argument("--source", metavar="URL", help="rtsp/http/udp/tcp URL, device, named pipe, or - for stdin")
    s.add_argument("--format", help="input format for sources FFmpeg cannot guess (v4l2, mpegts, ...)")
    s.add_argument("--smooth", type=int, default=1, metavar="K",
                   help="average the scores of the last K windows (default 1)")
    s.add_argument("--threshold", type=float, metavar="P",
                   help="label a window only when its smoothed top probability is at least P (else null)")
    s.add_argument("--reconnect", type=int, default=0, metavar="N",
                   help="retry a stalled or dropped source N times, 1 s, 2 s, 4 s ... apart (default 0)")
    s.add_argument("--stall-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="seconds without data before the source counts as stalled (default 10)")


def _check(args: argparse.Namespace) -> None:
    if args.topk < 1 or args.clips < 1:
        raise UsageError("--topk and --clips must be >= 1")
    if args.source is not None:
        if args.inputs:
            raise UsageError("give video files or --source URL, not both")
        if args.window is None:
            raise UsageError("--source needs --window (the span of each prediction, e.g. --window 2s or 48f)")
        if any((args.json, args.csv, args.timeline, args.overlay)):
            raise UsageError("--source writes JSON lines on stdout; --json, --csv, --timeline and "
                             "--overlay are for video files")
        if args.smooth < 1 or args.reconnect < 0 or args.stall_timeout <= 0:
            raise UsageError("--smooth must be >= 1, --reconnect >= 0 and --stall-timeout > 0")
        return
    if not args.inputs:
        raise UsageError("give video files or frame folders, or --source URL for a live source")
    if args.window is None and (args.stride or args.csv or args.timeline):
        raise UsageError("--stride, --csv and --timeline need --window (e.g. --window 4s)")
    for flag, value, suffix in (("--json", args.json, ".json"), ("--csv", args.csv, ".csv"),
                                ("--timeline", args.timeline, ".png")):
        # also keeps `--json clip.mp4` from overwriting a video with JSON
        if value not in (None, "-") and Path(value).suffix.lower() != suffix:
            raise UsageError(f"{flag} writes a {suffix} file, got '{value}'")


def _per_input(out: str, src: Path, many: bool, suffix: str) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}-{src.stem or src.name}{out.suffix or suffix}") if many else out


def run(args: argparse.Namespace) -> int:
    _check(args)
    predictor = Predictor(args.checkpoint, device=args.device, clips=args.clips, compile=args.compile)
    if args.source is not None:
        return _live(predictor, args)
    paths = expand_inputs(args.inputs)
    many = len(paths) > 1
    results: list[tuple[Path, Prediction | list[Prediction]]] = []
    failed = 0
    ds = predictor.dataset(paths) if args.window is None else None
    for i, path in enumerate(paths):
        try:
            if args.window is None:
                result = predictor.predict_item(ds, i, args.topk)
            else:
                result = list(predictor.predict_windows(path, args.window, args.stride, topk=args.topk))
                if args.timeline:
                    save_timeline(result, _per_input(args.timeline, path, many, ".png"))
            if args.overlay:
                write_overlay(path, _per_input(args.overlay, path, many, ".mp4"), result)
        except DecodeError as e:
            print("gdn predict: " + " ".join(str(e).split()), file=sys.stderr)  # one line
            failed += 1
            continue
        results.append((path, result))
        if args.json != "-":
            _print_table(path, result)
    if args.json is not None:
        _write_json(results, args.json)
    if args.csv:
        _write_csv(results, args.csv)
    return 2 if failed else 0


def _live(predictor: Predictor, args: argparse.Namespace) -> int:
    for p in predictor.stream(args.source, args.window, args.stride, smooth=args.smooth, topk=args.topk,
                              format=args.format, timeout=args.stall_timeout, reconnect=args.reconnect):
        _, name, prob = p.topk[0]
        label = name if args.threshold is None or prob >= args.threshold else None
        line = {"time": round(time.time(), 3), **p.to_dict(), "label": label}
        print(json.dumps(line), flush=True)
    return 0


def _write_json(results: list, out: str) -> None:
    items = []
    for path, r in results:
        if isinstance(r, Prediction):
            items.append(r.to_dict())
        else:
            windows = [{k: v for k, v in p.to_dict().items() if k != "path"} for p in r]
            items.append({"path": str(path), "frames": r[-1].window.end, "fps": float(r[0].window.rate),
                          "windows": windows})
    text = json.dumps(items, indent=1)
    if out == "-":
        print(text)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


def _write_csv(results: list, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "window", "start", "end", "start_frame", "end_frame", "rank", "index",
                         "class", "probability"])
        for path, windows in results:
            for p in windows:
                w = p.window
                for rank, (k, name, prob) in enumerate(p.topk, 1):
                    writer.writerow([path, w.index, f"{w.start_time:.4f}", f"{w.end_time:.4f}", w.start, w.end,
                                     rank, k, name, f"{prob:.6f}"])


def _print_table(path: Path, result: Prediction | list[Prediction]) -> None:
    if isinstance(result, Prediction):
        width = max(len(c) for _, c, _ in result.topk)
        print(result.path)
        for rank, (_, name, p) in enumerate(result.topk, 1):
            print(f"  {rank:>2}  {name:<{width}}  {100 * p:6.2f}%")
        return
    first = result[0].window
    print(f"{path}: {len(result)} windows of {first.end - first.start} frames, {result[-1].window.end} frames "
          f"at {float(first.rate):.3g} fps")
    print(f"  {'window':>6}  {'start':>8}  {'end':>8}  top classes")
    for p in result:
        w = p.window
        top = " | ".join(f"{name} {100 * prob:.1f}%" for _, name, prob in p.topk)
        print(f"  {w.index:>6}  {w.start_time:8.2f}  {w.end_time:8.2f}  {top}")
