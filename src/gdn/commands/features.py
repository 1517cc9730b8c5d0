"""`gdn features CHECKPOINT (VIDEO... | --dataset [NAME]) --out FILE`: video embeddings.

One row per video (the checkpoint's evaluation clip: its frames and size, a centre crop), or
with `--window 2s --stride 1s` (or `16f`, `8f` in frames) one row per window of each video; each
row holds the video id, the label (-1 for videos given on the command line), the window's first
and last frame and its times in seconds, and the pooled pre-classifier embedding
(`gdn.engine.features.embed`). Saved as .npz, or .parquet when pyarrow is installed.

    gdn features runs/mine/best.pt clips/ --out clips.npz
    gdn features runs/mine/best.pt long.mp4 --window 2s --stride 1s --out long.npz
    gdn features runs/mine/best.pt --dataset --split validation --out val.npz   # the checkpoint's data

Inputs that cannot be read are reported on stderr, one line each, and the others are still
processed (exit code 2 then); in `--dataset` mode an unreadable video stops the command, as in
`gdn test`.
"""

from __future__ import annotations

import argparse
import sys

from gdn.data.annotations import DATASETS
from gdn.data.decode import DecodeError
from gdn.errors import UsageError

HELP = "pooled pre-classifier embeddings of videos, per video or per window (.npz / .parquet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .pt file written by `gdn train`")
    p.add_argument("inputs", nargs="*", metavar="VIDEO_OR_FOLDER",
                   help="video files, JPEG frame folders, or folders of videos")
    p.add_argument("--dataset", nargs="?", const="", choices=("", *DATASETS), metavar="NAME",
                   help="embed a dataset split instead (no NAME: the checkpoint's dataset)")
    p.add_argument("--data-root", help="with --dataset: default the checkpoint's data.root")
    p.add_argument("--split", help="with --dataset: default the checkpoint's data.val_split")
    p.add_argument("--list-file", help="with --dataset: an annotation list (default: the checkpoint's val_list)")
    p.add_argument("--out", required=True, help="output .npz or .parquet file")
    p.add_argument("--window", help="embed windows of this length, in seconds or frames: 2s, 16f (the windows "
                   "of `gdn predict --window`, the last partial one included)")
    p.add_argument("--stride", help="distance between window starts (default: the window), e.g. 1s, 8f")
    p.add_argument("--fps", type=float, default=12.0, help="frame rate of frame folders (default 12)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=0, help="loader workers (--dataset without --window)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default="auto")


def run(args: argparse.Namespace) -> int:
    if bool(args.inputs) == (args.dataset is not None):
        raise UsageError("give either video files / frame folders or --dataset, not both and not neither")
    if args.stride and not args.window:
        raise UsageError("--stride needs --window")
    from gdn.data.datasets import build_dataset
    from gdn.data.windows import Span
    from gdn.engine.features import Features, extract_features, extract_windows, save_features
    from gdn.engine.predict import Predictor, expand_inputs

    window = Span.parse(args.window) if args.window else None  # a bad span: one line before any work
    stride = Span.parse(args.stride) if args.stride else None
    predictor = Predictor(args.checkpoint, device=args.device, amp=args.amp)
    model, cfg, d = predictor.model, predictor.cfg, predictor.cfg.data
    common = dict(device=predictor.device, amp=args.amp, fps=args.fps)

    def windows(path, video_id: str, label: int) -> Features:
        feats = extract_windows(predictor, path, window, stride, batch_size=args.batch_size, fps=args.fps,
                                video_id=video_id)
        feats.labels = [label] * len(feats)
        return feats

    parts, failed = [], 0
    if args.dataset is not None:
        split = args.split or d.val_split
        ds = build_dataset(args.dataset or d.dataset, args.data_root or d.root, split, frames=d.frames, train=False,
                           size=d.size, short_side=d.short_side, sampling=d.sampling, label_order=d.label_order,
                           list_file=args.list_file or (d.val_list if split == d.val_split else None),
                           classes_file=d.classes_file)
        if ds.classes != predictor.classes:  # the labels saved must mean what the model's classes mean
            raise UsageError(f"{args.checkpoint}: the model was trained on {len(predictor.classes)} classes that "
                             f"differ from the {len(ds.classes)} classes of the {ds.name} {split} annotations under "
                             f"{args.data_root or d.root}")
        if window is None:
            parts.append(extract_features(model, ds, batch_size=args.batch_size, workers=args.workers, **common))
        else:
            parts.extend(windows(e.path, e.id, e.label) for e in ds.entries)
    else:
        for path in expand_inputs(args.inputs):
            try:
                parts.append(windows(path, str(path), -1) if window is not None else
                             extract_features(model, predictor.dataset([path]), batch_size=1, **common))
            except (DecodeError, OSError) as e:
                print("gdn features: " + " ".join(str(e.__cause__ or e).split()), file=sys.stderr)
                failed += 1
    out = Features.join(parts)
    if len(out):
        save_features(args.out, out, {"checkpoint": args.checkpoint, "model": cfg.model.name,
                                      "frames": d.frames, "size": d.size,
                                      "window": args.window or "", "stride": args.stride or args.window or ""})
    videos = len(dict.fromkeys(out.video_ids))
    dim = out.features.shape[1] if len(out) else 0
    print(f"{'file':<10}{args.out if len(out) else '(nothing written)'}\n{'rows':<10}{len(out)}\n"
          f"{'videos':<10}{videos}\n{'dimension':<10}{dim}")
    return 2 if failed else 0
