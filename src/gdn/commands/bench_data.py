"""`gdn bench-data`: training clips per second of ONE worker process (one core), for WebM and
JPEG-folder sources, with the full training pipeline of a worker (TSN sampling, decode of the
sampled frames, short side 256, multi-scale crop, resize to 224, flip) and the worker's share of
the batching (stacking the uint8 clips). Normalisation is not a worker's job: the engine does it
on the training device (`gdn.data.transforms.model_input`).

Without ``--root`` it writes synthetic Something-Something data with ``gdn.data.synthetic.generate``:
240p VP9 WebM as SSv2 ships it, JPEG folders at SSv1's real frame size (100 px high, 100x176:
the primary JPEG rows) and, beside them, the same 240p frames as JPEGs. Targets per core:
>= 35 clips/s from 240p VP9 WebM, >= 100 clips/s from JPEG folders.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from gdn.commands.check_data import table
from gdn.data.annotations import SSV1_SPLIT, SSV2_SPLIT
from gdn.data.datasets import VideoDataset, build_dataset
from gdn.data.decode import count_frames_cached
from gdn.data.loader import collate, init_worker
from gdn.errors import UsageError

HELP = "training-pipeline throughput (clips/s per worker process) for WebM and JPEG sources"
log = logging.getLogger(__name__)
TARGETS = {"webm": 35.0, "jpeg": 100.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, help="an existing dataset instead of the synthetic one")
    p.add_argument("--dataset", choices=["ssv1", "ssv2", "list"],
                   help="with --root: its layout (ssv2 WebM or ssv1 JPEG folders)")
    p.add_argument("--split", default="train")
    p.add_argument("--cache-dir", type=Path,
                   help="keep the synthetic dataset here and reuse it (default: a temporary folder)")
    p.add_argument("--frames", default="8,16", help="comma-separated frame counts")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--samples", type=int, default=192, help="clips timed per configuration")
    p.add_argument("--rounds", type=int, default=4,
                   help="rounds the samples are split into, every configuration timed in turn "
                        "(the defaults make a round one epoch of the 48 synthetic videos)")
    p.add_argument("--videos", type=int, default=48, help="synthetic training videos")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


# (layout, folder, height, width): SSv2 WebM at 240p; SSv1 JPEGs at their real 100x176, then 240p
SYNTHETIC = [("ssv2", "ssv2", 240, 426), ("ssv1", "ssv1-100p", 100, 176), ("ssv1", "ssv1", 240, 426)]


def _synthetic(out: Path, videos: int) -> list[tuple[str, Path]]:
    from gdn.data.synthetic import generate

    sources = []
    per_class = max(1, videos // 8)  # 4 pairs = 8 classes
    for fmt, folder, height, width in SYNTHETIC:
        root = out / folder
        sources.append((fmt, root))
        if (root / (SSV2_SPLIT if fmt == "ssv2" else SSV1_SPLIT).format(split="train")).exists():
            continue
        log.info("writing a synthetic %dx%d %s dataset to %s", height, width, fmt, root)
        # Something-Something clips: 12 fps, 2-6 s
        generate(root, format=fmt, classes=4, train_per_class=per_class, val_per_class=1,
                 test_per_class=1, height=height, width=width, min_frames=24, max_frames=72,
                 seed=0)
    return sources


def prepare(name: str, root: Path, split: str, frames: int, size: int) -> VideoDataset:
    """The training dataset of one configuration, ready to time: frame counts taken (as a
    training worker has them after its first epoch, or from ``build_dataset(cache_dir=...)``)
    and a first item read (imports, allocator)."""
    ds = build_dataset(name, root, split, frames=frames, size=size, train=True)
    for entry in ds.entries:
        count_frames_cached(entry.path, ds.frame_counts)
    collate([ds[(0, 99)]])
    return ds


def time_items(ds: VideoDataset, keys: range) -> tuple[float, float]:
    """(wall s, CPU s) of training items ``keys`` (sample ``k`` is video ``k % len(ds)`` of epoch
    ``k // len(ds)``), collated in batches of 8 as a DataLoader worker does: its copy into the
    batch is part of the worker's cost."""
    batch = 8
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(keys.start, keys.stop, batch):
        collate([ds[(k % len(ds), k // len(ds))] for k in range(start, min(start + batch, keys.stop))])
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(configs: list[tuple[str, Path, int]], split: str, size: int, samples: int,
          rounds: int) -> list[dict]:
    """One row per ``(dataset name, root, frames)`` configuration: ``samples`` training items
    each, timed in this process in ``rounds`` rounds that visit every configuration in turn,
    so that a burst of load from elsewhere falls on all of them alike.

    clips/s are taken of this process's CPU time (the per-core rate; on a shared machine it
    still drops when the core's other hardware thread is busy) and of wall time; a row gives
    the median of its rounds and the best round (the least disturbed). A round is a run of
    consecutive samples: when ``samples / rounds`` is the number of videos, every round is one
    epoch over the same videos, so rounds differ only by the load, not by the videos' lengths.
    """
    datasets = [prepare(name, root, split, frames, size) for name, root, frames in configs]
    rounds = max(1, min(rounds, samples))
    chunks = [range(r * samples // rounds, (r + 1) * samples // rounds) for r in range(rounds)]
    times = [[] for _ in datasets]  # per configuration: (clips, wall s, CPU s) per round
    for keys in chunks:
        for ds, out in zip(datasets, times):
            out.append((len(keys), *time_items(ds, keys)))
    rows = []
    for (name, root, frames), ds, out in zip(configs, datasets, times):
        height, width = ds.read_clips(0, np.random.default_rng(0)).shape[-2:]  # source frames
        cpu_rates = [n / c for n, _, c in out]
        wall_s, cpu_s = sum(w for _, w, _ in out), sum(c for _, _, c in out)
        rows.append({
            "dataset": name, "root": str(root), "videos": len(ds), "frames": frames, "size": size,
            "frame_size": f"{height}x{width}", "samples": samples, "rounds": rounds,
            "wall_s": round(wall_s, 3), "cpu_s": round(cpu_s, 3),
            "clips_per_s_wall": round(statistics.median(n / w for n, w, _ in out), 1),
            "clips_per_s_cpu": round(statistics.median(cpu_rates), 1),
            "clips_per_s_cpu_best": round(max(cpu_rates), 1),
            "source": "jpeg" if ds.entries[0].frames else "webm"})
    return rows


def run(args: argparse.Namespace) -> int:
    init_worker()  # one thread, and the worker's memory set-up: this process times one worker
    frame_counts = [int(v) for v in args.frames.split(",") if v]
    with tempfile.TemporaryDirectory(prefix="gdn-bench-data-") as tmp:
        if args.root is not None:
            if args.dataset is None:
                raise UsageError("--root needs --dataset (ssv1, ssv2 or list)")
            sources = [(args.dataset, args.root)]
        else:
            sources = _synthetic(args.cache_dir or Path(tmp), args.videos)
        configs = [(name, root, f) for name, root in sources for f in frame_counts]
        rows = bench(configs, args.split, args.size, args.samples, args.rounds)
    for r in rows:
        r["target_per_core"] = TARGETS.get(r["source"])
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(table(["source", "dataset", "frame HxW", "frames", "size", "clips/s (CPU time)",
                 "best round", "clips/s (wall)", "target/core"],
                [[r["source"], r["dataset"], r["frame_size"], r["frames"], r["size"],
                  r["clips_per_s_cpu"], r["clips_per_s_cpu_best"], r["clips_per_s_wall"],
                  r["target_per_core"] or "-"] for r in rows]))
    print(f"\n{args.samples} training clips per row in one process with one thread, in "
          f"{rows[0]['rounds']} rounds that take every row in turn; medians of the rounds. CPU "
          "time is the per-core rate; wall time is lower when other processes share the cores. "
          "A DataLoader with N workers gives about N times the per-core rate on N free cores.")
    return 0
