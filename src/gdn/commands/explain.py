"""`gdn explain CHECKPOINT VIDEO --out DIR`: where and when the model looked.

Grad-CAM for the predicted class (or `--class NAME`), one map per sampled frame, at the last
stage (or `--layer layerN`), and the temporal test: the class's probability with each frame
occluded, with the frames reversed and shuffled. Writes DIR/explain.json, DIR/frames.png (the
frames and their maps), DIR/temporal.png and DIR/overlay.mp4, and prints a summary. See
`gdn.engine.explain`.
"""

from __future__ import annotations

import argparse

from gdn.engine.explain import explain, save_explanation
from gdn.engine.predict import Predictor

HELP = "Grad-CAM per frame and a frame-order test for one video: where and when the model looked"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .pt file written by `gdn train`")
    p.add_argument("video", metavar="VIDEO_OR_FOLDER", help="a video file or a JPEG frame folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the JSON, PNGs and overlay video")
    p.add_argument("--class", dest="target", metavar="NAME",
                   help="the class to explain, by name or index (default: the predicted class)")
    p.add_argument("--layer", metavar="STAGE", help="layer1 ... layer4 (default: the last stage)")
    p.add_argument("--shuffles", type=int, default=5, help="random frame orders to score (default 5)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def run(args: argparse.Namespace) -> int:
    predictor = Predictor(args.checkpoint, device=args.device)
    e = explain(predictor, args.video, target=args.target, layer=args.layer, shuffles=args.shuffles)
    paths = save_explanation(e, args.out)
    t = e.temporal
    shuffled = f"{min(t['shuffled']):.3f}-{max(t['shuffled']):.3f}" if t["shuffled"] else "-"
    print(f"{e.path}: '{e.class_name}' p={e.probability:.3f} ({e.model}, Grad-CAM at {e.layer})")
    print(f"  frame order   in order {t['original']:.3f}   reversed {t['reversed']:.3f}   shuffled {shuffled}")
    print("  occluded      " + "  ".join(f"#{i}: {p:.3f}" for i, p in zip(e.frame_indices, t["occluded"])))
    print(f"  wrote {', '.join(str(p) for p in paths.values())}")
    return 0
