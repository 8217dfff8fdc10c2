"""What the workflow's jobs ask the scheduler for, and how a model's training job starts: one
process; torchrun with `training.gpus` processes on one node; or, on several nodes (a SLURM job,
run as an `mpi` job so that its shell runs once in the allocation), srun starting one torchrun per
node, which meet at the job's first node. No torch here: the rules call these while the workflow
is planned."""

from __future__ import annotations

from typing import Protocol

# Seconds torchrun gives its workers to stop after a SIGTERM before it kills them: within the SLURM
# profile's warning before the time limit (--signal=TERM@300, workflow/profiles/slurm/config.yaml).
SHUTDOWN_TIMEOUT_S = 240


class Processes(Protocol):
    """The settings of pipeline.config.TrainingConfig that say where a model trains."""

    device: str
    gpus: int
    nodes: int

    @property
    def world_size(self) -> int: ...


def gpu_request(device: str) -> int:
    """The `gpu` resource of a job that uses one GPU when there is one (`device`: a config's auto,
    cpu or cuda): so that GPU jobs never overlap on a one-GPU workstation."""
    return 0 if device == "cpu" else 1


def launcher(training: Processes) -> str:
    """The command that runs `-m pipeline.train`."""
    if training.world_size == 1:
        return "python"
    # On SIGTERM torchrun forwards it and kills the workers after its shutdown timeout (30 s by
    # default); rank 0 needs longer to finish its step and save the checkpoint. Set through the
    # environment, which a torchrun older than its --shutdown-timeout option (March 2026) ignores:
    # given the option, that one stops at once ("unrecognized arguments").
    grace = f"TORCH_ELASTIC_SHUTDOWN_TIMEOUT={SHUTDOWN_TIMEOUT_S}"
    if training.nodes == 1:
        return f"{grace} torchrun --standalone --nproc-per-node {training.gpus}"
    # --kill-on-bad-exit: a node whose torchrun fails ends the job, instead of leaving the other
    # nodes waiting for it in a collective until the process group's timeout.
    return (
        f"{grace} srun --kill-on-bad-exit=1 --ntasks-per-node=1 torchrun --nnodes {training.nodes}"
        f" --nproc-per-node {training.gpus}"
        " --rdzv-backend c10d --rdzv-id $SLURM_JOB_ID"
        " --rdzv-endpoint $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1):29400"
    )


def one_node_gpus(training: Processes) -> int | None:
    """The `gpu` resource of a training job on one node: its GPUs (none on the CPU, or when the
    job spans nodes and asks per node, through gres)."""
    return None if training.device == "cpu" or training.nodes > 1 else training.gpus


def gres_per_node(training: Processes) -> str | None:
    """The GPUs per node of a job on several nodes, as SLURM's gres (none otherwise)."""
    return None if training.device == "cpu" or training.nodes == 1 else f"gpu:{training.gpus}"


def multi_node(training: Processes, value):
    """`value` for a job on several nodes, else None (Snakemake then leaves the resource out)."""
    return value if training.nodes > 1 else None
