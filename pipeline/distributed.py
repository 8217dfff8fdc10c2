"""Training on several processes with torch.distributed, as torchrun starts them (one per GPU,
or several CPU processes with the gloo backend).

Every process runs the same loop on its share of each global batch (`World.share`), and
DistributedDataParallel averages the networks' gradients. What else has to combine across the
processes goes through the World: batch-norm statistics are summed (`World.sum`, which gradients
flow back through) so that they are the global batch's; each step's logged losses are averaged,
and a stop asked of any process is seen by all, in the loop's one sync (`World.mean_and_any`);
`World.barrier` waits for all. The VAE's KL term, a sum over the batch, needs none of these: the
objective scales it by the number of processes, so that DDP's average of the gradients is the
gradient of the whole batch's sum.

One source of truth, the process group: `start` begins it and returns this process's World, and
`World.current()`, which the norms ask while they run, reads the same group.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# How long a collective waits for a process that does not come. The first waits while each node's
# first process loads the training images for its node (FFHQ's 70,000 faces: minutes, and nodes
# finish apart), so this covers loading, not only a step; a process that dies is noticed at once by
# torchrun, which stops the others, so the wait only bounds one that hangs.
TIMEOUT = datetime.timedelta(hours=1)
# torchrun's wait between forwarding a SIGTERM to its workers and killing them, where it is not set.
TORCHRUN_DEFAULT_GRACE_S = 30


def torchrun_grace_s() -> int:
    """Seconds the installed torchrun gives its workers to stop after a SIGTERM: the environment's
    TORCH_ELASTIC_SHUTDOWN_TIMEOUT (which the train rule sets) where this torch reads it, that is
    where its launcher has a shutdown timeout (torch 2.11 has none), else the fixed 30."""
    from torch.distributed.launcher.api import LaunchConfig

    if "shutdown_timeout" not in {field.name for field in dataclasses.fields(LaunchConfig)}:
        return TORCHRUN_DEFAULT_GRACE_S
    return int(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", TORCHRUN_DEFAULT_GRACE_S))


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> "World":
        """The world of the process group this process belongs to (a world of one without one)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return cls()
        rank = dist.get_rank()
        return cls(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))

    @property
    def main(self) -> bool:
        """The process that writes checkpoints, logs and results."""
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This process's part of a global batch (the batch size divides by the world size)."""
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of `tensor` over all processes, differentiable: each process's tensor gets the
        sum of all processes' gradients. The tensor itself in a world of one."""
        return _SumOverRanks.apply(tensor) if self.size > 1 else tensor

    def mean_and_any(self, values: torch.Tensor, flag: bool) -> tuple[list[float], bool]:
        """The mean of `values` (1-d, detached) over all processes, and whether `flag` is true in
        any of them, from one all-reduce."""
        combined = torch.cat([values.detach(), values.new_tensor([float(flag)])])
        if self.size > 1:
            dist.all_reduce(combined)
        *means, flags = (combined / self.size).tolist()
        return means, flags > 0

    def barrier(self) -> None:
        """Wait until every process is here."""
        if self.size > 1:
            dist.barrier()


def start(device: torch.device) -> tuple[World, torch.device]:
    """This process's World as torchrun described it in the environment, its process group
    started, and the device it computes on: on CUDA, its node's GPU local_rank (NCCL); on the CPU,
    gloo. A plain `python` run is a world of one and starts nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return World(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return World.current(), device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


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
