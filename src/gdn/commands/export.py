"""`gdn export CHECKPOINT --onnx OUT.onnx`: a trained model to ONNX, BatchNorm folded, verified."""

from __future__ import annotations

import argparse
import json

HELP = "export a checkpoint to ONNX (eval, BatchNorm folded, dynamic batch), verified with onnxruntime"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint written by `gdn train` (last.pt, best.pt) or `gdn convert`")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the checkpoint's config)")
    p.add_argument("--size", type=int, default=None, help="input size (default: the checkpoint's config)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max relative difference to PyTorch")


def run(args: argparse.Namespace) -> int:
    from gdn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
    from gdn.export import export_onnx, read_metadata

    ckpt = load_checkpoint(args.checkpoint)
    model, cfg, classes = build_model_from_checkpoint(ckpt)
    frames = args.frames or cfg.data.frames
    size = args.size or cfg.data.size
    meta = {"model": cfg.model.name, "options": json.dumps(cfg.model.options), "checkpoint": str(args.checkpoint)}
    export_onnx(model, args.onnx, frames, size, classes=classes, metadata=meta, tolerance=args.tolerance)
    props = read_metadata(args.onnx)
    print(f"{'file':<10}{args.onnx}\n{'model':<10}{cfg.model.name}\n{'input':<10}clips (B, 3, {frames}, {size}, {size})"
          f"\n{'output':<10}logits (B, {len(classes)})\n{'classes':<10}{len(json.loads(props['classes']))} in metadata"
          f"\n{'verified':<10}onnxruntime = PyTorch within {args.tolerance:g} at batch sizes 1 and 3")
    return 0
