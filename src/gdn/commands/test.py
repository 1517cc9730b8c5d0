"""`gdn test CHECKPOINT`: accuracy of a trained model on a labelled split.

By default the paper's protocol on the checkpoint's own dataset and validation split: the centre
frame of each of T segments, one centre crop, one clip (paper section 3.2). `--clips N --crops 3`
gives multi-view testing (softmax averaged over the N x 3 views). `--protocol tsm|mmaction` runs a
peer's evaluation exactly: its frame indices, resize and crops, views (`--clips 2` is their
twice_sample; `--crops 3` TSM's GroupFullResSample, with `--full-res` of 256-pixel squares, or
MMAction2's ThreeCrop) and view averaging (docs/protocols.md). Runs under torchrun too
(`torchrun --nproc_per_node 8 -m gdn test CKPT`); each video is counted once.

Writes, next to the checkpoint (or into --out): `<stem>-<split>-confusion.png`,
`<stem>-<split>-per-class.csv` and `.json`; `--scores FILE` saves the softmax scores of every
video for `gdn ensemble`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


from gdn.data.annotations import DATASETS, class_difference
from gdn.data.datasets import build_dataset
from gdn.data.loader import build_loader, close_loader
from gdn.data.sampling import PROTOCOLS, SAMPLINGS, check_clips
from gdn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
from gdn.engine.distributed import cleanup, init_distributed, is_distributed, is_main
from gdn.engine.evaluate import (EvalResult, ScoreFile, evaluate, json_safe, save_confusion_png, save_per_class,
                                 save_scores, view_average)
from gdn.errors import UsageError
from gdn.models.fast import compile_for_inference

log = logging.getLogger(__name__)

HELP = "evaluate a checkpoint (top-1, top-5, mean class accuracy) on a labelled split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .pt file written by `gdn train` or `gdn convert`")
    p.add_argument("--dataset", choices=DATASETS, help="default: the checkpoint's")
    p.add_argument("--data-root", help="default: the checkpoint's data.root")
    p.add_argument("--split", help="train | validation | test (default: the checkpoint's data.val_split)")
    p.add_argument("--list-file", help="annotation list for --dataset list, relative to the current directory "
                   "(default: the checkpoint's val_list, relative to its data root)")
    p.add_argument("--clips", type=int, default=1, help="temporal views per video (default 1: paper protocol)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial views per clip")
    p.add_argument("--protocol", choices=PROTOCOLS,
                   help="whose frame indices, pixels, views and view averaging: gdn's own or a peer's "
                        "(default: the checkpoint's data.protocol; docs/protocols.md)")
    p.add_argument("--sampling", choices=SAMPLINGS,
                   help="tsn (segments) or dense clips (default: the checkpoint's data.sampling)")
    p.add_argument("--full-res", action="store_true",
                   help="crop squares of the resized short side (256) instead of --size (224), as TSM's --full_res")
    p.add_argument("--frames", type=int, help="frames per clip (default: the checkpoint's)")
    p.add_argument("--size", type=int, help="crop size (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=16, help="videos per batch (per process)")
    p.add_argument("--workers", type=int, help="loader workers (default: the checkpoint's data.workers)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default="auto",
                   help="autocast (auto: bf16 on CUDA, none on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (frozen weights): the first "
                   "batch compiles for a minute or more on a CPU, so it pays off over many clips, not one video")
    p.add_argument("--out", help="folder for the confusion matrix and per-class files (default: the checkpoint's)")
    p.add_argument("--scores", metavar="FILE", help="save video ids, labels and softmax scores (.npz or .pt)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    model, cfg, classes = build_model_from_checkpoint(load_checkpoint(args.checkpoint))
    d = cfg.data
    dataset = args.dataset or d.dataset
    split = args.split or d.val_split
    # typed here: relative to the current directory; in the config: to the data root
    list_file = Path(args.list_file).absolute() if args.list_file else (d.val_list if split == d.val_split else None)
    frames, size = args.frames or d.frames, args.size or d.size
    short_side = d.short_side if args.size is None else None  # a new size gets its own 256/224 ratio
    protocol, sampling = args.protocol or d.protocol, args.sampling or d.sampling
    try:
        check_clips(sampling, protocol, args.clips)
    except ValueError as e:
        raise UsageError(str(e)) from None
    average = view_average(protocol, cfg.model.name)
    ds = build_dataset(dataset, args.data_root or d.root, split, frames=frames, train=False, size=size,
                       short_side=short_side, clips=args.clips, crops=args.crops, sampling=sampling,
                       protocol=protocol, full_res=args.full_res, label_order=d.label_order,
                       list_file=list_file, classes_file=d.classes_file)
    if ds.classes != classes:
        raise UsageError(f"{args.checkpoint}: the model's {len(classes)} classes differ from the {len(ds.classes)} classes "
                         f"of the {dataset} {split} annotations under {args.data_root or d.root} "
                         f"({class_difference(classes, ds.classes)}, checkpoint vs annotations; check --dataset, "
                         "--data-root, the label order and classes file)")

    device = init_distributed(args.device)
    try:
        model = model.to(device)
        if args.compile:
            model = compile_for_inference(model.eval())
        loader = build_loader(ds, args.batch_size, train=False,
                              workers=d.workers if args.workers is None else args.workers,
                              distributed=is_distributed())
        log.info("evaluating %s on %s %s under the %s protocol: %d videos, %d frames, crops of %d, "
                 "%d clip(s) x %d crop(s), %s averaged", args.checkpoint, dataset, split, protocol, len(ds),
                 frames, ds.transform.crop_size, args.clips, args.crops, average)
        try:
            res = evaluate(model, loader, device, amp=args.amp, average=average, distributed=is_distributed(),
                           num_classes=len(classes), desc=f"test {split}")
        finally:
            close_loader(loader)
        if not is_main():
            return 0
        try:
            _write_outputs(args, res, ds, classes, split, _views_tag(args, protocol, sampling != d.sampling))
        except OSError as e:
            raise UsageError(f"cannot write the results: {e}; choose another --out") from None
        _print(args, res, protocol, ds.num_views, average)
        return 0
    finally:
        cleanup()


def _views_tag(args, protocol: str, other_sampling: bool) -> str:
    """What sets these results apart from the default evaluation, for the file names:
    e.g. "-tsm-2x3" (empty for the checkpoint's own single view)."""
    parts = [protocol] if protocol != "gdn" else []
    if other_sampling:
        parts.append(args.sampling)
    if args.clips > 1 or args.crops > 1:
        parts.append(f"{args.clips}x{args.crops}")
    if args.full_res:
        parts.append("fullres")
    return "".join(f"-{p}" for p in parts)


def _write_outputs(args, res: EvalResult, ds, classes: list[str], split: str, tag: str) -> None:
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt.parent
    stem = f"{ckpt.stem}-{Path(split).stem}{tag}"
    if res.num_labelled:
        save_confusion_png(res.confusion, classes, out / f"{stem}-confusion.png",
                           title=f"{ckpt.name} on {split}: top-1 {res.top1:.2f}%")
        save_per_class(res, classes, out / f"{stem}-per-class.csv", out / f"{stem}-per-class.json")
        log.info("wrote %s and %s", out / f"{stem}-confusion.png", out / f"{stem}-per-class.csv")
    if args.scores:
        ids = [ds.video_ids[i] for i in res.indices]
        save_scores(args.scores, ScoreFile(video_ids=ids, labels=res.labels, scores=res.scores, classes=classes))
        log.info("wrote scores of %d videos to %s", len(ids), args.scores)


def _print(args, res: EvalResult, protocol: str, views: int, average: str) -> None:
    metrics = {**res.metrics(), "num_labelled": res.num_labelled, "protocol": protocol, "views": views}
    if args.json:
        print(json.dumps(json_safe(metrics)))
        return
    print(f"{'checkpoint':<12}{args.checkpoint}")
    print(f"{'protocol':<12}{protocol}, {views} view(s), {'softmax' if average == 'prob' else 'logits'} averaged")
    for name, key in (("top1", "top1"), ("top5", "top5"), ("mean class", "mean_class_accuracy")):
        print(f"{name:<12}{res.metrics()[key]:>8.2f}")
    print(f"{'videos':<12}{res.num_videos:>8d}")
    if res.num_labelled != res.num_videos:
        print(f"{'labelled':<12}{res.num_labelled:>8d}")
