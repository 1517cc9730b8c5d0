"""Multi-process training helpers: one process per GPU (or CPU worker), launched by torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/PORT); `init_distributed` reads
them, so the same command runs single-process (`gdn train ...`) or distributed
(`torchrun --nproc_per_node 8 -m gdn train ...`, multi-node with `--nnodes/--rdzv-endpoint`).

The process group gets a timeout (GDN_DIST_TIMEOUT seconds, default 600): when a worker dies,
the survivors' next collective fails with an error instead of waiting forever.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as dist

from gdn.ranks import get_rank, get_world_size, is_distributed, is_main  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; any other name unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def init_distributed(device: str = "auto", timeout_s: float | None = None) -> torch.device:
    """Resolve the device and, under torchrun (WORLD_SIZE > 1), join the process group.

    Backend nccl on CUDA, gloo on CPU. Each process uses GPU LOCAL_RANK. Returns the device.
    """
    world_size = env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device)
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{device}' requested but CUDA is not available; use --device cpu")
        if world_size > 1 or dev.index is None:
            dev = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if timeout_s is None:
            timeout_s = float(os.environ.get("GDN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(seconds=timeout_s),
            **({"device_id": dev} if backend == "nccl" else {}),
        )
        log.info("rank %d/%d joined (%s, %s, timeout %.0fs)", get_rank(), world_size, backend, dev, timeout_s)
    return dev


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _collective_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo only CPU tensors.
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float] | torch.Tensor) -> torch.Tensor:
    """Sum a small vector of numbers over all ranks (float64, returned on the CPU)."""
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    if is_distributed():
        t = t.to(_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def all_gather_object(obj: Any) -> list[Any]:
    """`[obj from rank 0, obj from rank 1, ...]` on every rank (picklable objects of any size)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out
