"""CPU time of one evaluation item under each protocol, and under the box mapping gdn's
evaluation used before (the crop box mapped back to the source frame, rounded to whole source
pixels, only the box resized; training crops still work that way).

    python benchmarks/eval_views.py [--out /tmp/eval_views] [--rounds 7]

Writes (once) two synthetic validation sets with `gdn.data.synthetic.generate`: JPEG frames at
SSv1's 100x176 and VP9 WebM at 240x428 (SSv2's 240p; VP9 wants even sizes), 20 videos of 30-50
frames each. An item is what a loader worker makes: decode the sampled frames, cut the views.
One process, one thread, process CPU time; the configurations take turns in every round so that
their ratios hold on a machine whose speed drifts. docs/protocols.md ("The cost of exact pixels")
records a run.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from gdn.data import transforms as T
from gdn.data.datasets import build_dataset
from gdn.data.synthetic import generate


def box_views(self: T.EvalTransform, clip: T.Clip) -> torch.Tensor:
    """gdn's evaluation views before resize-then-crop: each box mapped to the source frame."""
    height, width = T.clip_size(clip)
    rh, rw = T.short_side_size(height, width, self.short_side)
    boxes = [T.center_crop_box(rh, rw, self.size)] if self.crops == 1 else T.three_crop_boxes(rh, rw, self.size)
    return T.stack_frames_last([T.resized_crop(clip, T._to_source(b, height / rh, width / rw, height, width),
                                               (self.size, self.size)) for b in boxes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/eval_views", help="where the synthetic datasets are written")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    sources = {"ssv1": (100, 176), "ssv2": (240, 428)}
    for name, (height, width) in sources.items():
        root = Path(args.out) / name
        if not root.exists():
            generate(root, format=name, classes=2, train_per_class=0, val_per_class=10, test_per_class=0,
                     height=height, width=width, min_frames=30, max_frames=50, workers=1)
    views_forward = T.EvalTransform.forward
    print("| source | T | crops | gdn old box | gdn resize-then-crop | tsm (Pillow) | mmaction |")
    print("|---|---|---|---|---|---|---|")
    for name, (height, width) in sources.items():
        for frames in (8, 16):
            for crops in (1, 3):
                sets = {key: build_dataset(name, Path(args.out) / name, "validation", frames=frames, crops=crops,
                                           label_order="csv", protocol="gdn" if key == "box" else key)
                        for key in ("box", "gdn", "tsm", "mmaction")}
                times: dict[str, list[float]] = {key: [] for key in sets}
                for rnd in range(args.rounds + 1):  # round 0 warms the page cache and frame counts
                    for key, ds in sets.items():
                        T.EvalTransform.forward = box_views if key == "box" else views_forward
                        start = time.process_time()
                        for i in range(len(ds)):
                            ds[i]
                        if rnd:
                            times[key].append((time.process_time() - start) / len(ds))
                T.EvalTransform.forward = views_forward
                ms = {key: 1e3 * float(np.median(v)) for key, v in times.items()}
                cells = [f"{ms['box']:.2f} ms"] + [f"{ms[k]:.2f} ({ms[k] / ms['box']:.2f}x)"
                                                   for k in ("gdn", "tsm", "mmaction")]
                print(f"| {'JPEG' if name == 'ssv1' else 'WebM'} {height}x{width} | {frames} | {crops} | "
                      + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
