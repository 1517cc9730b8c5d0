"""Load test (docs/reliability.md, case 17): a training run over thousands of synthetic clips
with several loader workers holds flat memory and decodes each file once per epoch.

Slow (a few minutes on 2 CPU cores): `pytest -m slow tests/data/test_load.py -s` prints the numbers
recorded in docs/reliability.md. Scale with GDN_LOAD_CLIPS_PER_CLASS (8 classes) and GDN_LOAD_EPOCHS.

Instrumentation, all in this file:
- decoder calls: `gdn.data.datasets.read_frames` (decoding) and `gdn.data.decode._count` (the
  frame counting behind `count_frames` and the count caches) are replaced, before the loader
  workers fork, by wrappers that append `epoch path` to a per-process file;
- memory: at the end of every epoch (when the training loop saves `last.pt`), VmRSS and Pss
  (from /proc/<pid>/status and smaps_rollup) of the main process and of every descendant
  (the loader workers of the training and validation loaders).
"""

from __future__ import annotations

import collections
import json
import logging
import os
from pathlib import Path

import pytest
import torch

import gdn.data.datasets as datasets_module
import gdn.data.decode as decode_module
import gdn.engine.train as train_module
from gdn.config import Config
from gdn.data.synthetic import generate

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

CLIPS_PER_CLASS = int(os.environ.get("GDN_LOAD_CLIPS_PER_CLASS", "375"))  # x 8 classes = 3000
EPOCHS = int(os.environ.get("GDN_LOAD_EPOCHS", "5"))
WORKERS = 4
BATCH = 50


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _kib(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:  # the process just exited
        pass
    return 0


def memory_mib() -> dict:
    """RSS and PSS (MiB) of this process and of all its descendants (loader workers)."""
    main = os.getpid()
    procs = _descendants(main)
    rss = {p: _kib(Path(f"/proc/{p}/status"), "VmRSS") / 1024 for p in procs}
    pss = {p: _kib(Path(f"/proc/{p}/smaps_rollup"), "Pss") / 1024 for p in procs}
    workers = [p for p in procs if p != main]
    return {"main_rss": rss[main], "workers_rss": sum(rss[p] for p in workers),
            "total_pss": sum(pss.values()), "processes": len(procs)}


def test_case17_flat_memory_and_one_decode_per_file_per_epoch(tmp_path_factory, monkeypatch):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("synth")
    summary = generate(root, format="ssv2", classes=4, train_per_class=CLIPS_PER_CLASS, val_per_class=2,
                       test_per_class=0, height=32, width=32, min_frames=8, max_frames=12, workers=2)
    n_train = summary.counts["train"]
    assert n_train % BATCH == 0  # every clip is drawn exactly once per epoch

    # -- decoder instrumentation (inherited by the forked workers)
    reads = tmp_path_factory.mktemp("reads")
    real_read, real_count = datasets_module.read_frames, decode_module._count
    epoch_of = {}  # the epoch of the item being read, set by the dataset in each process

    class Counting(datasets_module.VideoDataset):
        def _item(self, index, epoch):
            epoch_of["epoch"] = epoch if self.train else -1
            return super()._item(index, epoch)

    def log_call(kind, path):
        with open(reads / f"{kind}-{os.getpid()}.txt", "a") as f:
            f.write(f"{epoch_of.get('epoch', -1)} {path}\n")

    def read_frames(path, indices):
        log_call("decode", path)
        return real_read(path, indices)

    def count(path):  # what count_frames and the frame-count caches call to count a file
        log_call("count", path)
        return real_count(path)

    monkeypatch.setattr(datasets_module, "read_frames", read_frames)
    monkeypatch.setattr(decode_module, "_count", count)
    monkeypatch.setattr(datasets_module, "VideoDataset", Counting)

    # -- memory at every epoch end (the loop saves last.pt there, with all workers alive)
    samples: list[dict] = []
    real_save = train_module.save_checkpoint

    def save_and_measure(path, state, **kw):
        if Path(path).name == "last.pt":
            samples.append({"epoch": state["epoch"], **memory_mib()})
        return real_save(path, state, **kw)

    monkeypatch.setattr(train_module, "save_checkpoint", save_and_measure)

    cfg = Config()
    cfg.apply_overrides([
        "model.name=tsn_tiny", "model.dropout=0.0", "data.dataset=ssv2", f"data.root='{root}'",
        "data.frames=4", "data.size=28", "data.short_side=32", f"data.workers={WORKERS}",
        f"train.epochs={EPOCHS}", f"train.batch_size={BATCH}", f"train.base_batch_size={BATCH}",
        "train.lr=0.05", "train.lr_steps=[]", "train.amp=none", "train.eval_every=1",
        f"out='{tmp_path_factory.mktemp('run')}'", "device=cpu",
    ])
    result = train_module.train(cfg)

    # -- decoder calls per (epoch, file)
    decodes: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for f in reads.iterdir():
        target = decodes if f.name.startswith("decode") else counts
        for line in f.read_text().splitlines():
            epoch, path = line.split(" ", 1)
            target[(int(epoch), path)] += 1
    train_files = {str(c.path) for c in summary.clips if c.split == "train"}
    for epoch in range(EPOCHS):
        per_file = {p: decodes[(epoch, p)] for p in train_files}
        assert set(per_file.values()) == {1}, f"epoch {epoch + 1}: decodes per file {collections.Counter(per_file.values())}"
    val_files = {str(c.path) for c in summary.clips if c.split == "validation"}
    assert {decodes[(-1, p)] for p in val_files} == {EPOCHS}  # validated after every epoch
    count_calls = sum(counts.values())
    per_file_counts = collections.Counter(p for (_, p) in counts.elements())
    assert len(samples) == EPOCHS
    base = samples[0]
    growth = {k: max(s[k] for s in samples[1:]) - base[k] for k in ("main_rss", "workers_rss", "total_pss")}
    report = {"train_clips": n_train, "epochs": EPOCHS, "workers": WORKERS, "batch": BATCH,
              "decode_calls": sum(decodes.values()), "count_frames_calls": count_calls,
              "max_count_frames_calls_per_file": max(per_file_counts.values()),
              "count_frames_calls_by_epoch": [sum(n for (e, _), n in counts.items() if e == epoch)
                                              for epoch in range(EPOCHS)],
              "clips_per_s": [round(h["clips_per_s"], 1) for h in result["history"]],
              "memory_mib": [{k: round(v, 1) if isinstance(v, float) else v for k, v in s.items()} for s in samples],
              "growth_after_epoch1_mib": {k: round(v, 1) for k, v in growth.items()}}
    print("\nLOAD TEST", json.dumps(report, indent=1))
    # frame counting: at most once per file per worker process (each worker keeps its own cache)
    assert max(per_file_counts[p] for p in train_files) <= WORKERS, report
    # memory: the same processes throughout (persistent workers), RSS flat after the first epoch
    assert all(s["processes"] == samples[0]["processes"] for s in samples), report
    assert growth["main_rss"] < 64, report
    assert growth["workers_rss"] < 64, report
    # PSS rises in the first epochs as the forked workers un-share the parent's pages (copy on
    # write of touched Python objects) and then stays: no growth per epoch in the second half
    late = [s["total_pss"] for s in samples[EPOCHS // 2:]]
    assert max(late) - min(late) < 64, report
