"""Training on several processes with torch.distributed, as torchrun starts them (one per GPU,
or several CPU processes with the gloo backend).

Every process runs the same loop on its slice of each global batch; DistributedDataParallel
averages the gradients. What must be summed over all processes for the result to equal one
process on the whole batch (batch-norm statistics, the VAE's KL sum) goes through sum_over_ranks,
an all-reduce that gradients flow back through.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# How long a collective waits for a process that does not come (a dead rank is also noticed by
# torchrun, which then stops the others).
TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes checkpoints, logs and results."""
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This process's part of a global batch (the batch size divides by the world size)."""
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


def start(device_type: str) -> World:
    """The world torchrun described in the environment, its process group started (a plain
    `python` run is a world of one and starts nothing)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ["LOCAL_RANK"]))
    if device_type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=TIMEOUT)
    return world


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if distributed() else 1


class _SumOverRanks(torch.autograd.Function):
    """y = the sum of x over all processes; each x gets the sum of all processes' gradients of y."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all processes, differentiable; the tensor itself on one."""
    return _SumOverRanks.apply(tensor) if distributed() else tensor


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of a detached tensor (e.g. logged losses) over all processes."""
    if not distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def barrier() -> None:
    if distributed():
        dist.barrier()
