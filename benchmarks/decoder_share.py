"""How much of a WebM training item is the VP9 decoder, and how much everything else.

    python benchmarks/decoder_share.py [--root /tmp/dp/bench/ssv2] [--frames 16] [--epochs 4]

For every training item of an SSv2-layout dataset (by default the synthetic one that
`gdn bench-data --cache-dir /tmp/dp/bench` writes), in turn: the item as a DataLoader worker
makes it (with its batching copy), then the WebM parse and VP9 decode of the span the item's
sampled frames need (up to the last sampled frame; no RGB conversion, no transform), with the
same random draws. One process, one thread, the worker's set-up (`init_worker`), process CPU
time. Interleaving the two per item makes their ratio hold on a machine whose speed drifts; the
absolute figures move with it. docs/benchmarks.md ("Data loading") records a run.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from gdn.data.datasets import build_dataset
from gdn.data.decode import _decode_packets, _parse_webm_file, count_frames_cached
from gdn.data.loader import collate, init_worker


def decode_span(path: Path, last: int) -> None:
    """Parse the WebM file and decode its frames up to index `last` (what a clip must decode)."""
    for index, _ in enumerate(_decode_packets(_parse_webm_file(path))):
        if index >= last:
            return


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/dp/bench/ssv2"))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    init_worker()
    ds = build_dataset("ssv2", args.root, "train", frames=args.frames, size=args.size, train=True)
    if _parse_webm_file(ds.entries[0].path) is None:
        raise SystemExit(f"{args.root}: needs WebM videos the gdn.data.webm parser reads")
    counts = [count_frames_cached(e.path, ds.frame_counts) for e in ds.entries]
    collate([ds[(0, 99)]])  # warm up
    item_s = decode_s = 0.0
    decoded = 0
    keys = [(i, epoch) for epoch in range(args.epochs) for i in range(len(ds))]
    for i, epoch in keys:
        start = time.process_time()
        collate([ds[(i, epoch)]])
        middle = time.process_time()
        rng = np.random.default_rng([ds.seed, epoch, i])  # the item's own draws
        last = int(ds.sampler(counts[i], rng).max())
        middle2 = time.process_time()
        decode_span(ds.entries[i].path, last)
        item_s += middle - start
        decode_s += time.process_time() - middle2
        decoded += last + 1
    n = len(keys)
    print(f"{args.frames} frames, {n} items ({args.epochs} epochs of {len(ds)} videos), ms per item:")
    print(f"  training item            {1e3 * item_s / n:7.2f}  ({n / item_s:.1f} clips/s)")
    print(f"  parse + decode alone     {1e3 * decode_s / n:7.2f}  ({n / decode_s:.1f} clips/s; "
          f"{decoded / n:.1f} frames, {1e3 * decode_s / decoded:.3f} ms each)")
    print(f"  the rest                 {1e3 * (item_s - decode_s) / n:7.2f}  "
          f"(decoder's share {decode_s / item_s:.2f})")


if __name__ == "__main__":
    main()
