"""Training on several processes (torchrun; gloo on the CPU): the model one process trains on
the whole batch, resumes across kills and world sizes, and a dead process ends the job."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import time
from collections.abc import Iterator

import numpy as np
import psutil
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from support import final_weights, read_log, run_training, tiny_model, wait_for_log_rows

pytestmark = pytest.mark.distributed

LOSSES = ["G_gan", "G_feat", "G_kld", "D_real", "D_fake"]


def trained(workdir, pairs, **settings):
    workdir.mkdir()
    process = run_training(workdir, pairs, **settings)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return final_weights(workdir), read_log(workdir / "out" / "train_log.csv"), stderr


def signal_tree(pid: int, signum: int) -> None:
    """Signal a process and every process under it (torchrun puts its workers in sessions of
    their own, so its process group is not enough)."""
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for process in tree:
        process.send_signal(signum)


def losses(log: list[dict], steps: slice = slice(None)) -> np.ndarray:
    return np.array([[row[k] for k in LOSSES] for row in log[steps]])


@contextlib.contextmanager
def in_float64() -> Iterator[None]:
    """Torch in float64, with every `.float()` the code takes to keep statistics and losses out
    of bf16 a `.double()`: then one process and two differ only where the math does, not by
    float32's rounding (which the batch norms' backward amplifies to 1e-3 of some gradients,
    more on some CPUs than on others)."""
    dtype, to_float = torch.get_default_dtype(), torch.Tensor.float
    torch.set_default_dtype(torch.float64)
    torch.Tensor.float = torch.Tensor.double
    try:
        yield
    finally:
        torch.Tensor.float = to_float
        torch.set_default_dtype(dtype)


def one_step(rank: int, size: int, name: str, port: int, out: str) -> None:
    """One Trainer step of `name` in float64 as process `rank` of `size` (gloo), saving rank 0's
    losses (averaged over the processes, as training logs them) and every gradient."""
    with in_float64():
        _one_step(rank, size, name, port, out)


def _one_step(rank: int, size: int, name: str, port: int, out: str) -> None:
    from pipeline.data.procedural import procedural_face
    from pipeline.distributed import World
    from pipeline.pairs import PairedFaces
    from pipeline.train import Trainer

    torch.set_num_threads(1)
    if size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=size)
    faces = [procedural_face(seed, 64) for seed in range(8)]
    data = PairedFaces(
        torch.from_numpy(np.stack([image for image, _ in faces])).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(np.stack([label for _, label in faces])),
    )
    model = tiny_model(name, batch_size=4, gpus=size, resolution=64)
    # Learning rates 0: the D step then sees the G the G step saw, and no Adam update (which
    # turns a gradient that is 0 but for rounding into +-lr) stands between the two runs.
    model = dataclasses.replace(model, training=dataclasses.replace(model.training, lr_G=0.0, lr_D=0.0))
    torch.manual_seed(0)
    world = World(rank, size, rank)
    trainer = Trainer.create(model, torch.device("cpu"), world)
    values, _ = world.mean_and_any(trainer.run_step(data)[0], False)
    networks = trainer.networks
    grads = {
        f"{part}.{key}": parameter.grad.clone()
        for part, network in (("G", networks.generator), ("D", networks.discriminator), ("E", networks.encoder))
        if network is not None
        for key, parameter in network.named_parameters()
    }
    if rank == 0:
        losses = torch.tensor(values[: len(trainer.objective.LOSSES)], dtype=torch.float64)
        torch.save({"losses": losses, "grads": grads}, out)
    if size > 1:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["spade", "spade_instance", "spade_vae", "pix2pixhd", "oasis"])
def test_two_processes_take_the_step_one_process_takes(tmp_path, name):
    """2 processes x 2 images against 1 process x 4, from one seed, in float64: the step's losses
    and every gradient of G, D and E agree to float64's rounding (batch norm synced over the
    processes, the KLD's sum and the VAE's and OASIS's noise those of the whole batch, OASIS's class
    balance and LabelMix coins from the whole batch's classes, DDP's average of the halves;
    measured: 1e-14).

    A gradient that is 0 in exact arithmetic (a bias just before a batch norm) is rounding noise
    in both runs: such tensors (norm below 1e-3 of the network's largest) must only stay that
    small. Without synced batch norm the losses already differ (docs/benchmarks.md, several processes)."""
    one_step(0, 1, name, 0, str(tmp_path / "one.pt"))
    mp.spawn(one_step, args=(2, name, 29400 + os.getpid() % 500, str(tmp_path / "two.pt")), nprocs=2)
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("one", "two"))
    torch.testing.assert_close(two["losses"], one["losses"], rtol=1e-10, atol=1e-12)
    assert one["grads"].keys() == two["grads"].keys()
    for network in ("G", "D", "E"):
        grads = {key: grad for key, grad in one["grads"].items() if key.startswith(network + ".")}
        if not grads:
            continue
        largest = max(float(grad.norm()) for grad in grads.values())
        for key, grad in grads.items():
            difference = float((two["grads"][key] - grad).norm())
            if float(grad.norm()) >= 1e-3 * largest:
                assert difference <= 1e-9 * float(grad.norm()), f"{key}: {difference:.3g} against {float(grad.norm()):.3g}"
            else:
                assert float(two["grads"][key].norm()) <= 2e-3 * largest, key


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(pairs, tmp_path):
    straight, _, _ = trained(tmp_path / "straight", pairs, iterations=60, model="spade", batch_size=4, processes=2)
    workdir = tmp_path / "killed"
    workdir.mkdir()
    first = run_training(workdir, pairs, iterations=60, model="spade", batch_size=4, processes=2)
    wait_for_log_rows(workdir, 5, first)
    signal_tree(first.pid, signal.SIGKILL)  # torchrun and its workers, as a lost node would
    first.communicate(timeout=60)
    second = run_training(workdir, pairs, iterations=60, model="spade", batch_size=4, processes=2)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    resumed_at = int(re.search(r"resumed from step (\d+)", stderr).group(1))
    assert 3 <= resumed_at < 60 and resumed_at % 3 == 0, stderr[-3000:]
    resumed = final_weights(workdir)
    for key, tensor in straight["generator"].items():
        assert torch.equal(resumed["generator"][key], tensor), key
    assert [row["step"] for row in read_log(workdir / "out" / "train_log.csv")] == list(range(1, 61))


def test_a_two_process_checkpoint_resumes_on_one_process(pairs, tmp_path):
    """SIGTERM (a preempted job) stops both processes at one step, after rank 0's checkpoint;
    the same global batch then goes on in one process: its first step is the two processes'
    next step to rounding, and the run completes every step once."""
    _, straight_log, _ = trained(tmp_path / "straight", pairs, iterations=8, model="spade", batch_size=4, processes=2)
    workdir = tmp_path / "moved"
    workdir.mkdir()
    first = run_training(workdir, pairs, iterations=8, model="spade", batch_size=4, processes=2, checkpoint_every=100)
    wait_for_log_rows(workdir, 2, first)
    signal_tree(first.pid, signal.SIGTERM)  # as SLURM signals a job's processes
    _, stderr = first.communicate(timeout=120)
    assert first.returncode != 0 and "stopped by signal at step" in stderr, stderr[-3000:]
    stopped_at = int(stderr.split("stopped by signal at step ")[1].split(";")[0])
    second = run_training(workdir, pairs, iterations=8, model="spade", batch_size=4, checkpoint_every=100)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    assert f"resumed from step {stopped_at}" in stderr and "1 process(es), global batch 4, 4 per process" in stderr
    log = read_log(workdir / "out" / "train_log.csv")
    assert [row["step"] for row in log] == list(range(1, 9))
    if stopped_at < 8:
        next_step = slice(stopped_at, stopped_at + 1)
        np.testing.assert_allclose(losses(log, next_step), losses(straight_log, next_step), rtol=1e-4, atol=1e-5)


def test_a_dead_process_ends_the_job_with_an_error_and_a_rerun_resumes(pairs, tmp_path):
    workdir = tmp_path / "fault"
    workdir.mkdir()
    job = run_training(workdir, pairs, iterations=40, model="spade", batch_size=4, processes=2)
    wait_for_log_rows(workdir, 4, job)
    workers = [p for p in psutil.Process(job.pid).children(recursive=True) if "pipeline.train" in " ".join(p.cmdline())]
    rank_1 = next(p for p in workers if p.environ().get("RANK") == "1")
    killed = time.monotonic()
    rank_1.kill()
    _, stderr = job.communicate(timeout=180)
    assert job.returncode != 0
    ended = time.monotonic() - killed
    print(f"the job ended {ended:.1f} s after rank 1 died")
    assert ended < 90, "the other process did not stop in time"
    rerun = run_training(workdir, pairs, iterations=40, model="spade", batch_size=4, processes=2)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr[-3000:]
    assert "resumed from step" in stderr
