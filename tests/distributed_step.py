"""One SGD step of a small linear model, for tests/test_distributed.py: a module of its own, so
the processes torch spawns import only torch and the module under test."""

from __future__ import annotations

import os

import torch

from training.fit import distributed


def one_step(rank: int, processes: int, port: int, out: str) -> None:
    """One SGD step of a small linear model on 8 rows, sharing them among `processes`."""
    if processes > 1:
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(processes),
            RANK=str(rank), LOCAL_RANK=str(rank),
        )  # fmt: skip
    cpu = torch.device("cpu")
    distributed.start(cpu)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    rows = torch.arange(32.0).reshape(8, 4) / 10
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ids = distributed.share(list(range(8)))
    forward = distributed.wrap(model, cpu)  # kept: DDP's hooks live as long as its wrapper
    loss = torch.nn.functional.cross_entropy(forward(rows[ids]), targets[ids])
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    if distributed.is_main():
        torch.save(model.state_dict(), out)
    distributed.stop()
