"""WebM demuxing for a training item: gdn.data.webm + a bare decoder vs PyAV with cut-down probing.

    python benchmarks/webm_demux.py [--root DATASET] [--frames 8,16] [--rounds 12]

`gdn.data.decode` demuxes VP8/VP9 WebM with its own parser (`gdn.data.webm`) and decodes the
packets with a bare `av.CodecContext`, without `av.open`. The alternative it is measured
against: `av.open(path, format="webm", options={"probesize": "32", "analyzeduration": "0"})`
(no format probing, the smallest probe buffer FFmpeg accepts, no stream analysis window),
then PyAV's demuxer and decoder. `avformat_find_stream_info`, which PyAV always calls, still
decodes the first frame to learn the pixel format: no option skips it.

Both arms time the full training item, `VideoDataset.__getitem__((index, epoch))` (frame
sampling, decoding, multi-scale crop, resize, flip), on SSv2-layout 240p VP9 WebM: by default
the synthetic set `gdn synth --format ssv2 --height 240 --width 426` writes (48 training
clips of 24-72 frames, as `gdn bench-data` uses). One process, one thread, the loader worker's
set-up (`init_worker`), process CPU time; rounds of one epoch each, A and B alternating
(ABBA...), frame counts taken first (as a worker has them after its first epoch); medians over
rounds, and the median of the per-round ratios. Both arms give the same items (checked on the
first epoch). docs/benchmarks.md ("WebM demuxing") records a run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import av
import torch

from gdn.data import decode
from gdn.data.datasets import VideoDataset, build_dataset
from gdn.data.loader import init_worker
from gdn.data.synthetic import generate


def pyav_cut_probing(probesize: str) -> contextlib.AbstractContextManager:
    """`gdn.data.decode` without its WebM parser: every file opened by `av.open` with the
    format given and probing cut down."""
    def open_webm(path: Path) -> av.container.InputContainer:
        decode._check_file(path)
        return av.open(str(path), format="webm",
                       options={"probesize": probesize, "analyzeduration": "0"})

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(decode, "_parse_webm_file", lambda path: None))
    stack.enter_context(mock.patch.object(decode, "_open", open_webm))
    return stack


def time_epoch(ds: VideoDataset, epoch: int) -> float:
    """CPU seconds per training item over one epoch."""
    start = time.process_time()
    for i in range(len(ds)):
        ds[(i, epoch)]
    return (time.process_time() - start) / len(ds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, help="an SSv2-layout dataset (default: a synthetic one)")
    p.add_argument("--frames", default="8,16", help="comma-separated frames per clip")
    p.add_argument("--rounds", type=int, default=12, help="epochs timed per arm")
    p.add_argument("--probesize", default="32", help="PyAV's probesize in bytes (FFmpeg's minimum: 32)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    init_worker()
    with tempfile.TemporaryDirectory(prefix="gdn-webm-demux-") as tmp:
        root = args.root
        if root is None:
            root = Path(tmp)
            generate(root, format="ssv2", classes=4, train_per_class=6, val_per_class=1,
                     test_per_class=1, height=240, width=426, min_frames=24, max_frames=72)
        arms = {"gdn.data.webm": contextlib.nullcontext, "PyAV cut probing":
                lambda: pyav_cut_probing(args.probesize)}
        print(f"{root}, CPU ms per training item (median of {args.rounds} epochs):")
        for frames in [int(f) for f in args.frames.split(",")]:
            ds = build_dataset("ssv2", root, "train", frames=frames, train=True)
            ds.count_video_frames()
            for i in range(len(ds)):  # warm-up, and the same items from both arms
                with arms["PyAV cut probing"]():
                    other = ds[(i, 0)]["clip"]
                assert torch.equal(ds[(i, 0)]["clip"], other), ds.entries[i].path
            times: dict[str, list[float]] = {name: [] for name in arms}
            for epoch in range(args.rounds):
                order = list(arms) if epoch % 2 == 0 else list(arms)[::-1]
                for name in order:
                    with arms[name]():
                        times[name].append(time_epoch(ds, epoch))
            a, b = times["gdn.data.webm"], times["PyAV cut probing"]
            ratio = statistics.median(y / x for x, y in zip(a, b))
            print(f"  {frames:2d} frames: gdn.data.webm {1e3 * statistics.median(a):.2f}, PyAV cut "
                  f"probing {1e3 * statistics.median(b):.2f}; PyAV / gdn.data.webm {ratio:.3f} "
                  f"(gdn.data.webm saves {100 * (1 - 1 / ratio):.1f}% of PyAV's item time)")


if __name__ == "__main__":
    main()
