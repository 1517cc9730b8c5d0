"""`gdn convert SRC OUT.pt`: a TSM-repository or MMAction2 TSN/TSM/I3D checkpoint as a gdn checkpoint.

    gdn convert TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth tsm_sthv1.pt \\
        --dataset ssv1 --data-root /data/sthv1
    gdn test tsm_sthv1.pt

The network comes from the file (`gdn.models.peers`); `--model` where it cannot tell. The class
names from `--classes FILE` or the dataset (in the order the peer used: sorted SSv1 names for
the TSM repository, labels.csv order for MMAction2). See docs/peers.md.
"""

from __future__ import annotations

import argparse

HELP = "convert a TSM-repository or MMAction2 TSN/TSM/I3D checkpoint into a gdn checkpoint (test, predict, export)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SRC", help="the peer's checkpoint (.pth)")
    p.add_argument("out", metavar="OUT.pt", help="the gdn checkpoint to write")
    p.add_argument("--from", dest="format", choices=("tsm", "mmaction"),
                   help="insist on the source's format (default: from its keys)")
    p.add_argument("--model", help="the gdn model the file holds, where the file cannot tell (e.g. tsm_r50)")
    p.add_argument("--classes", metavar="FILE", help="class names, one a line, in the model's output order")
    p.add_argument("--frames", type=int, help="frames per clip it was trained with (default: what the file says)")
    p.add_argument("--dataset", choices=("ssv1", "ssv2", "list"), help="its dataset (default: what the file says)")
    p.add_argument("--data-root", help="the dataset's folder: recorded, and where --dataset ssv1|ssv2 reads the "
                                       "class names")
    p.add_argument("--label-order", choices=("sorted", "csv"),
                   help="SSv1 class order (default: the peer's, sorted for TSM, csv for MMAction2)")
    p.add_argument("--split", default="validation", help="the split whose annotations list the classes")


def run(args: argparse.Namespace) -> int:
    from gdn.convert import convert_checkpoint
    from gdn.errors import UsageError

    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames {args.frames}: must be at least 1")
    summary = convert_checkpoint(args.source, args.out, model=args.model, classes=args.classes, frames=args.frames,
                                 format=args.format, dataset=args.dataset, data_root=args.data_root,
                                 label_order=args.label_order, split=args.split)
    classes = summary["classes"]
    rows = [
        ("source", f"{summary['source']} ({summary['format']} format)"),
        ("model", summary["model"] + (f" {summary['options']}" if summary["options"] else "")),
        ("classes", f"{len(classes)}: {', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}"),
        ("frames", str(summary["frames"])),
        ("dataset", summary["dataset"] or "-"),
        ("label order", summary["label_order"] or "-"),
        ("tensors", f"{summary['tensors']}, all loaded"),
        ("written", f"{args.out} (read back: identical logits)"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0
