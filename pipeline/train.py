"""`python -m pipeline.train`: train one model variant on the train split, resumably.

`train` reads top to bottom: load the training pairs into memory once; build the networks, the
objective they train with and their Adam optimisers (two time-scale: D learns faster), in a
`Trainer`; resume from the newest checkpoint of this exact setting if there is one; then
`train_loop`, where each step is one generator update and one discriminator update on a fake
made again after the generator's update, as NVlabs' trainer runs them (`train_step`), and a row
of the running log; last, generator.pt. Checkpoints are atomic, and SIGTERM (a cluster
preempting the job) or Ctrl-C saves one at the end of the step before exiting.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from pipeline import cli, distributed, launch
from pipeline.config import ModelConfig, TrainingConfig, load
from pipeline.devices import resolve_device
from pipeline.distributed import World
from pipeline.errors import PipelineError
from pipeline.files import atomic_path, remove_leftovers
from pipeline.health import output_spread
from pipeline.images import save_png
from pipeline.labelmaps import colorize
from pipeline.layout import ModelFiles, RunFiles
from pipeline.models.average import STATISTICS_BATCHES, STATISTICS_EVERY, MovingAverage
from pipeline.models.networks import Networks, build
from pipeline.models.objective import Objective, build_objective
from pipeline.models.trained import save_trained
from pipeline.pairs import PairedFaces, load_pairs, one_hot_labels, to_model_inputs, to_uint8_images
from pipeline.parse.manifest import read_manifests
from pipeline.progress import progress
from pipeline.training_log import TrainingLog

log = logging.getLogger("pipeline.train")

SAMPLES_IN_GRID = 4
# Adam's implementation choices, made by make_optimizers for where it runs.
IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def train(model: ModelConfig, image_paths: list[str], label_paths: list[str], out_dir: Path) -> None:
    """Train `model` in this process, or as one of the processes torchrun started; then write
    out_dir/generator.pt, and the running log beside it."""
    cfg, files = model.training, ModelFiles(Path(out_dir))
    world, device = distributed.start(resolve_device(cfg.device, f"config key training.device (model {model.name})"))
    try:
        torch.manual_seed(cfg.run_seed)
        key = model.run_key()
        run = files.run(key)
        data = load_pairs(image_paths, label_paths, cfg.resolution, cfg.workers, world, key)
        log.info("%s: %d training pairs at %dx%d on %s", model.name, len(data), cfg.resolution, cfg.resolution, device)
        log.info("%s: %d process(es), global batch %d, %d per process", model.name, world.size, cfg.batch_size,
                 cfg.batch_size // world.size)
        grace = distributed.torchrun_grace_s() if world.size > 1 and world.main else launch.SHUTDOWN_TIMEOUT_S
        if grace < launch.SHUTDOWN_TIMEOUT_S:
            log.warning("this torch's torchrun (%s) kills the processes %d s after a SIGTERM, not %d: a stop "
                        "at a time limit may come before the checkpoint is saved (torch 2.15 waits as long as "
                        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT says)", torch.__version__, grace, launch.SHUTDOWN_TIMEOUT_S)
        trainer = Trainer.create(model, device, world)
        log.info("%s: checkpoints, samples and the running log in %s", model.name, run.folder)
        checkpoints = Checkpoints(run.checkpoints, cfg.keep_checkpoints)
        trainer.resume(checkpoints)
        train_loop(trainer, data, checkpoints, run, model.name)
        if world.main:
            save_trained(files.generator, model, trainer.networks.synthesizing())
            with atomic_path(files.train_log) as tmp:
                tmp.write_bytes(run.log.read_bytes())
            log.info("%s: trained %d steps; wrote %s", model.name, trainer.step, files.generator)
        world.barrier()
    finally:
        distributed.stop()


def train_loop(trainer: Trainer, data: PairedFaces, checkpoints: Checkpoints, run: RunFiles, name: str) -> None:
    """Steps until training.iterations. Process 0 writes each step's row of the running log, a
    sample grid every sample_every steps, and a checkpoint every checkpoint_every steps, at the
    last step and when a signal asks to stop; then every process exits with the signal's status."""
    cfg, world = trainer.cfg, trainer.world
    running_log = TrainingLog(run, trainer.objective.LOSSES, trainer.objective.FAKE_LOSS, name, cfg.tensorboard)
    with (
        stop_requests() as stop_requested,
        running_log.resumed(trainer.step, cfg.iterations) if world.main else contextlib.nullcontext(),
        progress(total=cfg.iterations, initial=trainer.step, desc=f"train {name}", unit="step",
                 disable=not world.main) as bar,
    ):
        while trainer.step < cfg.iterations:
            started = time.perf_counter()
            values, sample = trainer.run_step(data)
            step = trainer.step
            # The one sync per step: the logged values, averaged over the processes, and whether any
            # was asked to stop (SLURM signals every one; all must stop at the same step).
            values, stop = world.mean_and_any(values, bool(stop_requested))
            img_per_s = cfg.batch_size / (time.perf_counter() - started)
            if step % STATISTICS_EVERY == 0 or step == cfg.iterations:
                trainer.collect_average_statistics(data)  # on every process: its batch norms sync
            if world.main:
                running_log.write(step, values, trainer.learning_rates(), img_per_s)
                bar.update()
                if step % cfg.sample_every == 0 or step == cfg.iterations:
                    running_log.samples(step, write_samples(*sample, run.samples(step)))
                if step % cfg.checkpoint_every == 0 or step == cfg.iterations or stop:
                    checkpoints.save(trainer.state_dict(), step)
            if stop:
                world.barrier()  # no process leaves before the checkpoint is written
                log.warning("stopped by signal at step %d; checkpoint saved, a rerun resumes from it", step)
                # The signal's own status; a process stopping because another one was signalled, SIGTERM's.
                raise SystemExit(128 + (stop_requested[0] if stop_requested else signal.SIGTERM))


def train_step(
    objective: Objective,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    seg: torch.Tensor,
    real: torch.Tensor,
    autocast=contextlib.nullcontext(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration as NVlabs' trainer runs it: a generator update on the objective's G losses,
    then a discriminator update on its D losses, which judge a fake the updated generator makes
    again. Returns the objective's LOSSES (detached, weighted as optimised) and the D step's fake."""
    with autocast:
        g_losses = objective.generator_losses(seg, real)
    opt_G.zero_grad(set_to_none=True)
    sum(g_losses.values()).backward()
    opt_G.step()

    with autocast:
        d_losses, fake = objective.discriminator_losses(seg, real)
    opt_D.zero_grad(set_to_none=True)
    sum(d_losses.values()).backward()
    opt_D.step()
    losses = {**g_losses, **d_losses}
    return torch.stack([losses[name] for name in objective.LOSSES]).detach(), fake


@dataclasses.dataclass
class Trainer:
    """A model's networks, objective and optimisers, set up for its device as the config asks:
    fused Adam, bf16 autocast on CUDA, channels_last where `training.channels_last` (CUDA and CPU
    alike: oneDNN's convolutions are faster in it too), DistributedDataParallel on several
    processes, compiled modules where `training.compile`; and the steps taken."""

    cfg: TrainingConfig
    device: torch.device
    world: World
    networks: Networks  # whose state checkpoints hold
    objective: Objective  # over the networks as the step runs them: wrapped and compiled where asked
    opt_G: torch.optim.Adam
    opt_D: torch.optim.Adam
    autocast: torch.autocast
    memory_format: torch.memory_format
    step: int = 0

    @classmethod
    def create(cls, model: ModelConfig, device: torch.device, world: World = World()) -> Trainer:
        cfg, cuda = model.training, device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        networks = build(model)
        for network in (networks.generator, networks.discriminator, networks.encoder):
            if network is not None:
                network.to(device, memory_format=memory_format)
        if cfg.ema_decay is not None:  # OASIS: the average starts as a copy of the initial generator
            networks.average = MovingAverage(networks.generator, cfg.ema_decay)
        opt_G, opt_D = make_optimizers(networks, cfg)

        def wrapped(network: torch.nn.Module | None) -> torch.nn.Module | None:
            if network is not None and world.size > 1:
                network = DistributedDataParallel(network, device_ids=[device.index] if cuda else None)
            if network is not None and cfg.compile:
                network = torch.compile(network)
            return network

        stepped = Networks(*(wrapped(n) for n in (networks.generator, networks.discriminator, networks.encoder)))
        objective = build_objective(model, stepped, device, world)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and cuda)
        return cls(cfg, device, world, networks, objective, opt_G, opt_D, autocast, memory_format)

    def run_step(self, data: PairedFaces) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The next step: its learning rates, this process's share of its batch, one train_step.
        Returns the logged values (the objective's LOSSES, then the fakes' spread; on the device,
        not yet synced) and what a sample grid shows: the share's uint8 label maps, its real
        images and the D step's fakes."""
        cfg, step = self.cfg, self.step
        for optimizer, base in ((self.opt_G, cfg.lr_G), (self.opt_D, cfg.lr_D)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(base, step, cfg)
        share = self.world.share(cfg.batch_size)
        indices = batch_indices(step, cfg.batch_size, len(data), cfg.run_seed)[share]
        flips = batch_flips(step, cfg.batch_size, cfg.run_seed) if cfg.flip else torch.zeros(cfg.batch_size, dtype=bool)
        images_uint8, labels_uint8 = data.batch(indices, flips[share])
        real, seg = to_model_inputs(images_uint8, labels_uint8, self.device)
        real, seg = real.contiguous(memory_format=self.memory_format), seg.contiguous(memory_format=self.memory_format)
        losses, fake = train_step(self.objective, self.opt_G, self.opt_D, seg, real, self.autocast)
        if self.networks.average is not None:  # OASIS: then the moving average takes the step
            self.networks.average.update(self.networks.generator)
        self.step += 1
        return torch.cat([losses, output_spread(fake, real)[None]]), (labels_uint8, real, fake)

    def collect_average_statistics(self, data: PairedFaces) -> None:
        """OASIS: the generator's moving average collects its batch-norm statistics again, as the
        authors do every 1,000 steps and before they save it (STATISTICS_EVERY and the last step:
        never on the checkpoint or sample interval, which must not change the result), on
        STATISTICS_BATCHES batches of training label maps with their noise, drawn from a generator
        of their own, seeded by the run's seed and the step, so that training's draws stay as they
        were."""
        average, cfg = self.networks.average, self.cfg
        if average is None:
            return
        draws = torch.Generator().manual_seed(cfg.run_seed * 1_000_003 + 700_001 + self.step)
        share = self.world.share(cfg.batch_size)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for _ in range(STATISTICS_BATCHES):
                indices = torch.randint(len(data), (cfg.batch_size,), generator=draws)[share]
                noise = torch.randn(cfg.batch_size, average.network.z_dim, generator=draws)[share]
                _, labels = data.batch(indices, torch.zeros(len(indices), dtype=torch.bool))
                seg = one_hot_labels(labels, self.device).contiguous(memory_format=self.memory_format)
                yield seg, noise.to(self.device)

        with self.autocast:
            average.collect_statistics(batches())

    def learning_rates(self) -> tuple[float, float]:
        return self.opt_G.param_groups[0]["lr"], self.opt_D.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        """What a resumed run needs to take the steps an uninterrupted one would: the steps
        taken, the networks, both optimisers and the RNG states."""
        networks = self.networks
        return {
            "step": self.step,
            "generator": networks.generator.state_dict(),
            "discriminator": networks.discriminator.state_dict(),
            "encoder": networks.encoder.state_dict() if networks.encoder is not None else None,
            "average": networks.average.network.state_dict() if networks.average is not None else None,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            # This process's GPU only: in a distributed run every rank draws the same numbers on its
            # own GPU (the VAE's noise of the whole batch), and rank 0, which saves, advanced only its own.
            # A CPU run leaves CUDA alone, even where a GPU is visible: asking opens a context on it.
            "rng_cuda": [torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else [],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict into the networks and optimisers, wherever they live (load_state_dict
        copies weights and optimiser state to their device); its RNG states must be CPU byte tensors."""
        networks = self.networks
        networks.generator.load_state_dict(state["generator"])
        networks.discriminator.load_state_dict(state["discriminator"])
        if networks.encoder is not None:
            networks.encoder.load_state_dict(state["encoder"])
        if networks.average is not None:
            networks.average.network.load_state_dict(state["average"])
        _load_optimizer(self.opt_G, state["opt_G"])
        _load_optimizer(self.opt_D, state["opt_D"])
        torch.set_rng_state(state["rng_cpu"])
        # Into this process's GPU, whichever rank and world size saved it (older checkpoints hold
        # every visible GPU's state, the first being the one that trained).
        if state["rng_cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"][0], self.device)
        self.step = state["step"]

    def resume(self, checkpoints: Checkpoints) -> None:
        """Load the newest checkpoint, if there is one. It is read onto the CPU whatever device
        wrote it, so that its RNG states are CPU byte tensors."""
        newest = checkpoints.newest()
        if newest is not None:
            self.load_state_dict(torch.load(newest, map_location="cpu", weights_only=True))
            log.info("resumed from step %d (%s)", self.step, newest)


def make_optimizers(
    networks: Networks, cfg: TrainingConfig, fused: bool = True
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G (with the encoder, which learns with it) and for D, at their own rates (TTUR);
    torch's fused implementation (one kernel per step, on CUDA and on the CPU) unless asked not to."""
    g_params = list(networks.generator.parameters())
    if networks.encoder is not None:
        g_params += list(networks.encoder.parameters())
    betas = (cfg.beta1, cfg.beta2)
    opt_G = torch.optim.Adam(g_params, lr=cfg.lr_G, betas=betas, fused=fused or None)
    opt_D = torch.optim.Adam(networks.discriminator.parameters(), lr=cfg.lr_D, betas=betas, fused=fused or None)
    return opt_G, opt_D


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a saved optimiser state, keeping this optimiser's implementation flags: the saved
    ones are those of whatever wrote it (an unfused checkpoint resumed here stays fused),
    and load_state_dict places the step counts by the flags it is given."""
    groups = [
        {**group, **{flag: mine[flag] for flag in IMPLEMENTATION_FLAGS if flag in mine}}
        for group, mine in zip(saved["param_groups"], optimizer.param_groups)
    ]
    optimizer.load_state_dict({**saved, "param_groups": groups})


def learning_rate(base: float, step: int, cfg: TrainingConfig) -> float:
    """Constant until decay_start, then linear to 0 at `iterations` (and 0 beyond, for a
    caller that steps on: never negative)."""
    if step < cfg.decay_start or cfg.iterations <= cfg.decay_start:
        return base
    return base * max(0, cfg.iterations - step) / (cfg.iterations - cfg.decay_start)


def batch_indices(step: int, batch_size: int, n_images: int, seed: int) -> torch.Tensor:
    """The images of a step: consecutive positions in a stream of per-epoch permutations seeded
    by (seed, epoch), so every image is seen once per epoch and a resumed run sees what an
    uninterrupted one would have."""
    positions = range(step * batch_size, (step + 1) * batch_size)
    permutations: dict[int, torch.Tensor] = {}
    indices = []
    for position in positions:
        epoch = position // n_images
        if epoch not in permutations:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            permutations[epoch] = torch.randperm(n_images, generator=generator)
        indices.append(permutations[epoch][position % n_images])
    return torch.stack(indices)


def batch_flips(step: int, batch_size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + 500_009 + step)
    return torch.rand(batch_size, generator=generator) < 0.5


class Checkpoints:
    """step_{N}.pt files of one run: written atomically, the newest `keep` kept."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder, self.keep = folder, keep

    def newest(self) -> Path | None:
        found = sorted(self.folder.glob("step_*.pt"))
        return found[-1] if found else None

    def save(self, state: dict, step: int) -> None:
        # A checkpoint cut off by SIGKILL at a step the rerun will not save again (a SIGTERM
        # stop between intervals) would otherwise stay as a temporary of 1 GB or more.
        remove_leftovers(self.folder, "step_*.pt")
        with atomic_path(self.folder / f"step_{step:08d}.pt") as tmp:
            torch.save(state, tmp)
        for old in sorted(self.folder.glob("step_*.pt"))[: -self.keep]:
            old.unlink()


def write_samples(labels: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, path: Path) -> np.ndarray:
    """Rows: colourised label map, real image, fake image; one column per sample. Returns the grid."""
    n = min(SAMPLES_IN_GRID, len(labels))
    rows = [colorize(labels[:n].cpu().numpy()), to_uint8_images(real[:n]), to_uint8_images(fake[:n])]
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    save_png(grid, path)
    return grid


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """The signals received while the block runs that ask training to stop after a checkpoint:
    SIGTERM (a cluster preempting the job) and SIGINT (Ctrl-C, which a terminal sends to
    Snakemake and its jobs alike; ignored if the process was started ignoring it). The handler
    only records them; after the first Ctrl-C, SIGINT does what it did before (a second one
    stops at once)."""
    requested: list[int] = []
    previous = {}

    def request(signum: int, frame) -> None:
        requested.append(signum)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, previous[signal.SIGINT])

    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, request)
    try:
        yield requested
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def train_pairs(manifests: list[Path]) -> tuple[list[str], list[str]]:
    """Image and label paths of the train split, from the parsing manifests."""
    rows = read_manifests(manifests, "train")
    if not rows:
        raise PipelineError(f"no train images in {', '.join(map(str, manifests))}")
    return [row["path"] for row in rows], [row["label"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--model-json", help="the model's validated settings as JSON (what the rule passes)")
    given.add_argument(
        "--configfile", type=Path, help="a pipeline config YAML, over config.yaml's defaults; then --model names the entry"
    )
    parser.add_argument("--model", help="a name under models: (with --configfile)")
    parser.add_argument("--manifests", type=Path, nargs="+", required=True, help="parsing shard manifests")
    parser.add_argument("--out-dir", type=Path, required=True, help="results/models/{model}")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the networks on the CPU")
    args = parser.parse_args()
    if args.configfile:
        if not args.model:
            parser.error("--configfile needs --model")
        model = ModelConfig.from_config(load(args.configfile), args.model)
        model.check_resolution()
    else:
        model = ModelConfig.from_json(args.model_json)
    model.check_packages()
    # Under torchrun the job's threads are shared by the node's processes, and one of them speaks.
    torch.set_num_threads(max(1, args.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    train(model, *train_pairs(args.manifests), args.out_dir)


if __name__ == "__main__":
    cli.run(main)
