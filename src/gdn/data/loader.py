"""Data loaders with exact, worker-count-independent determinism and mid-epoch resume.

The training sampler yields ``(index, epoch)`` keys: the dataset seeds each sample's
augmentation from ``(seed, epoch, index)`` (see :mod:`gdn.data.datasets`), so persistent workers
need no per-epoch reseeding and the batches do not depend on the number of workers. The order is a
permutation seeded by ``(seed, epoch)``, sharded over ranks like ``DistributedSampler``, and
``set_epoch(loader, epoch, start_batch)`` skips the batches a resumed run has already consumed.
With sample weights (``class_balanced_weights``: every class drawn equally often) the order is
a weighted draw with replacement from the same generator, so it keeps all of the above.

Evaluation shards WITHOUT padding (``EvalSampler``): every index is seen exactly once over all
ranks; the engine gathers predictions by the items' ``index``.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from gdn.data.transforms import stack_frames_last
from gdn.ranks import rank_world

__all__ = ["TrainSampler", "EvalSampler", "build_loader", "class_balanced_weights", "close_loader", "collate",
           "default_workers", "init_worker", "set_epoch"]


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")


class TrainSampler(Sampler):
    """Shuffled ``(index, epoch)`` keys, sharded over ``world_size`` ranks.

    Each epoch is a permutation from ``np.random.default_rng([seed, epoch])``, padded by wrapping
    to a multiple of ``world_size`` (as ``DistributedSampler``); rank ``r`` takes positions
    ``r, r + world_size, ...``. After ``set_epoch(epoch, start_batch)`` the first
    ``start_batch * batch_size`` keys of this rank are skipped and ``len`` counts the rest.

    ``weights`` (one per index, e.g. :func:`class_balanced_weights`): each epoch is instead
    ``size`` indices drawn with replacement with these probabilities, from the same generator.
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, weights: np.ndarray | None = None) -> None:
        _check_rank(rank, world_size)
        if weights is not None and (len(weights) != size or not np.all(np.asarray(weights) >= 0)):
            raise ValueError(f"weights must be {size} non-negative numbers, one per index")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.epoch, self.start_batch = 0, 0

    @property
    def epoch_len(self) -> int:
        """Keys per epoch on this rank, before skipping."""
        return math.ceil(self.size / self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, before skipping."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.weights is not None:
            order = rng.choice(self.size, size=self.size, replace=True, p=self.weights)
        else:
            order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        total = self.epoch_len * self.world_size
        order = np.resize(order, total)  # pad by repeating from the start
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.indices()[self.start_batch * self.batch_size :]:
            yield int(i), self.epoch

    def __len__(self) -> int:
        return max(0, self.epoch_len - self.start_batch * self.batch_size)


class EvalSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` in order: each index exactly once over all ranks,
    no padding, so no sample is counted twice in a distributed evaluation."""

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1) -> None:
        _check_rank(rank, world_size)
        self.size, self.rank, self.world_size = size, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


def class_balanced_weights(labels: list[int] | np.ndarray) -> np.ndarray:
    """One sampling weight per sample, ``1 / (videos of its class)``: with :class:`TrainSampler`
    every class is drawn equally often in expectation, however rare it is."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def default_workers() -> int:
    """Loader workers per training process when the config leaves ``data.workers`` unset: the
    CPUs this process may use, shared among the processes torchrun started on this node
    (at least 1, at most 8: more rarely helps a GPU and costs memory per worker)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, cpus // max(1, per_node)))


def init_worker(worker_id: int = 0) -> None:
    """The set-up of a DataLoader worker process (its ``worker_init_fn``); `gdn bench-data`
    runs it too, so that it times what a worker does."""
    # Workers decode and resize a few frames each: intra-op threads would only oversubscribe.
    torch.set_num_threads(1)
    _keep_freed_memory()
    if get_worker_info() is not None:  # a real worker (bench-data runs this in its own process)
        # The main process decides how to stop (a checkpoint at the next step): Ctrl-C, which
        # the terminal sends to every process of the group, must not kill the workers under it,
        # and the handlers inherited from the main process must not run here.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _keep_freed_memory() -> None:
    """Let a worker reuse freed clip buffers instead of returning them to the OS (glibc).

    A training item allocates and frees several MB (decoded frames, the resized and flipped
    uint8 clip: 2.4 MB each at 16x224x224). glibc hands blocks this big to mmap and unmaps them
    on free, so every item pays a page fault per 4 KiB it touches again (~10% of a 100x176 JPEG
    clip when items were float32, docs/benchmarks.md). Fixed thresholds keep them in the heap; a worker then holds at most its
    peak item memory. Only DataLoader worker processes (and `gdn bench-data`, which times one)
    do this, never the user's process.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks up to 32 MiB come from the heap
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MiB of freed heap
    except (OSError, AttributeError):  # not glibc (musl): keep its defaults
        pass


def collate(items: list[dict]) -> dict:
    """``default_collate`` of the dataset's items, with the clips stacked frames-last (their
    storage order: a plain copy, into shared memory in a worker) instead of re-laid out
    channel-first; the batch is ``(B, C, T, H, W)`` in ``torch.channels_last_3d``."""
    clips = [item["clip"] for item in items]
    batch = default_collate([{k: v for k, v in item.items() if k != "clip"} for item in items])
    batch["clip"] = stack_frames_last(clips, default_collate)
    return batch


def build_loader(dataset: Dataset, batch_size: int, *, train: bool, workers: int | None = None,
                 seed: int = 0, distributed: bool = False, drop_last: bool | None = None,
                 prefetch_factor: int = 4, weights: np.ndarray | None = None) -> DataLoader:
    """A DataLoader over ``dataset`` with :class:`TrainSampler` (``train``, drawing by
    ``weights`` when given) or :class:`EvalSampler`; ranks come from ``torch.distributed``
    when ``distributed``.

    Memory is pinned when CUDA is available, workers persist across epochs (stop them with
    :func:`close_loader`). ``workers`` defaults to :func:`default_workers`; ``drop_last`` to
    ``train``. Call :func:`set_epoch` before each training epoch.
    """
    if workers is None:
        workers = default_workers()
    rank, world = rank_world() if distributed else (0, 1)
    if train:
        sampler = TrainSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world, weights=weights)
    else:
        sampler = EvalSampler(len(dataset), rank=rank, world_size=world)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        drop_last=train if drop_last is None else drop_last,
        worker_init_fn=init_worker if workers > 0 else None, collate_fn=collate,
    )


def close_loader(loader: DataLoader) -> None:
    """Stop a loader's persistent workers now. PyTorch stops them when the loader's iterator is
    garbage collected, which a reference cycle (or a traceback holding the frame) can put off
    until the interpreter's exit, where the workers it kills make the loader raise."""
    iterator = getattr(loader, "_iterator", None)  # where PyTorch keeps the persistent workers' iterator
    loader._iterator = None
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def set_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Set the shuffling/augmentation epoch of a :func:`build_loader` training loader;
    ``start_batch`` skips the batches already consumed (exact mid-epoch resume)."""
    sampler = loader.sampler
    if not isinstance(sampler, TrainSampler):
        raise TypeError("set_epoch needs a training loader from gdn.data.build_loader(train=True)")
    sampler.set_epoch(epoch, start_batch)
