"""Which process this is: the rank and world-size helper that `gdn.data` and `gdn.engine` share.

It only reads the state of `torch.distributed`; joining and leaving the process group is
`gdn.engine.distributed`'s job. Outside torchrun every helper answers as the single process.
"""

from __future__ import annotations

import torch.distributed as dist


def is_distributed() -> bool:
    """A process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    """`(rank, world_size)` of this process: `(0, 1)` outside a process group."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def get_rank() -> int:
    return rank_world()[0]


def get_world_size() -> int:
    return rank_world()[1]


def is_main() -> bool:
    """Rank 0: the process that logs, writes files and shows progress."""
    return get_rank() == 0
