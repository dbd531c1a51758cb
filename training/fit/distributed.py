"""Full mode's fine-tune on several processes: under `torchrun`, each process takes its share of
every batch, DistributedDataParallel averages the gradients, and the weights stay equal
everywhere; the first process (rank 0) reports and exports, the others end after the loop.

    torchrun --nproc-per-node 4 -m training.cli train DATA --out MODEL --mode full

NCCL on GPUs, gloo on CPUs. Everything before the loop (data, split, the heads it starts from)
is deterministic, so each process computes the same, and all of them walk the same batches.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

WORLD_ENV = "WORLD_SIZE"  # set by torchrun, with RANK and LOCAL_RANK


def requested() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get(WORLD_ENV, "1")) > 1


def start(device: torch.device) -> None:
    """Join the process group (once)."""
    if requested() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def share(batch: list[int]) -> list[int]:
    """This process's rows of a batch every process walks (every `size`-th, from its rank)."""
    return batch[rank() :: size()]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as the loop calls it: DDP's wrapper when distributed, else itself."""
    if not active():
        return model
    devices = [device.index] if device.type == "cuda" else None
    # Some parameters may get no gradient in a step (a head's unused branch): allowed.
    return DistributedDataParallel(model, device_ids=devices, find_unused_parameters=True)


def stop() -> None:
    if active():
        dist.barrier()
        dist.destroy_process_group()


class NotMainProcess(Exception):
    """Raised in every process but rank 0 once the loop is done: rank 0 alone goes on."""
