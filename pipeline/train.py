"""`python -m pipeline.train`: train one model variant on the train split, resumably.

The loop, top to bottom: load every training pair into memory once; build the networks and
Adam optimisers (two time-scale: D learns faster); resume from the newest checkpoint of this
exact setting if there is one; then per step, one generator update (hinge GAN + feature
matching + VGG + KLD for VAE models) and one discriminator update (hinge) on a fake made
again after the generator's update, as the reference does. Checkpoints are atomic, and SIGTERM
(a cluster preempting the job) or Ctrl-C saves one at the end of the step before exiting.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from pipeline import cli
from pipeline.config import NETWORK_FORMAT, OPERATIONAL_TRAINING_KEYS, ModelConfig, TrainingConfig, load
from pipeline.dataset import PairedFaces, to_model_inputs, to_uint8_images
from pipeline.errors import PipelineError
from pipeline.files import atomic_path, read_csv, remove_leftovers, write_csv
from pipeline.health import SIGNS, HealthWatch, output_spread
from pipeline.images import save_png
from pipeline.labelmaps import colorize
from pipeline.models import Networks, build
from pipeline.models.encoder import sample_z
from pipeline.models.loss import (
    VGGLoss,
    d_hinge_loss,
    feature_matching_loss,
    g_hinge_loss,
    imagenet_vgg19_features,
    kld_loss,
    split_scores,
)
from pipeline.parse.manifest import read_manifests
from pipeline import distributed
from pipeline.devices import resolve_device
from pipeline.distributed import World
from pipeline.progress import progress

log = logging.getLogger("pipeline.train")

LOSSES = ("G_gan", "G_feat", "G_vgg", "G_kld", "D_real", "D_fake")
# fake_spread and health: pipeline.health's watch for a failed run.
LOG_COLUMNS = ("step", *LOSSES, "lr_G", "lr_D", "img_per_s", "fake_spread", "health")
# Settings that may change between a run and its resumption: they do not alter the steps taken so far.
RESUMABLE_CHANGES = OPERATIONAL_TRAINING_KEYS | {"iterations", "decay_start"}
SAMPLES_IN_GRID = 4


def run_key(model: ModelConfig) -> str:
    """Names the checkpoints of one setting: a changed architecture or loss starts a new run
    beside the old one instead of resuming weights that no longer fit."""
    settings = model.identity()
    settings["training"] = {k: v for k, v in settings["training"].items() if k not in RESUMABLE_CHANGES}
    settings["network_format"] = NETWORK_FORMAT
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


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


def training_state(networks: Networks, opt_G, opt_D, step: int) -> dict:
    return {
        "step": step,
        "generator": networks.generator.state_dict(),
        "discriminator": networks.discriminator.state_dict(),
        "encoder": networks.encoder.state_dict() if networks.encoder is not None else None,
        "opt_G": opt_G.state_dict(),
        "opt_D": opt_D.state_dict(),
        "scaler": None,  # bf16 autocast needs no loss scaling
        "rng_cpu": torch.get_rng_state(),
        # This process's GPU only: in a distributed run every rank draws the same numbers on its
        # own GPU (the VAE's noise of the whole batch), and rank 0, which saves, advanced only its own.
        "rng_cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() else [],
    }


def resume(checkpoints: Checkpoints, networks: Networks, opt_G, opt_D) -> int:
    """Restore the newest checkpoint into the networks and optimisers, wherever they live, and
    return its step (0 without one). It is read onto the CPU whatever device wrote it: the RNG
    states must be CPU byte tensors, and load_state_dict copies weights and optimiser state to
    the device of the modules."""
    newest = checkpoints.newest()
    if newest is None:
        return 0
    state = torch.load(newest, map_location="cpu", weights_only=True)
    networks.generator.load_state_dict(state["generator"])
    networks.discriminator.load_state_dict(state["discriminator"])
    if networks.encoder is not None:
        networks.encoder.load_state_dict(state["encoder"])
    _load_optimizer(opt_G, state["opt_G"])
    _load_optimizer(opt_D, state["opt_D"])
    torch.set_rng_state(state["rng_cpu"])
    # Into this process's GPU, whichever rank and world size saved it (older checkpoints hold
    # every visible GPU's state, the first being the one that trained).
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng_cuda"][0], torch.cuda.current_device())
    log.info("resumed from step %d (%s)", state["step"], newest)
    return state["step"]


# Adam's implementation choices, made by make_optimizers for where it runs.
IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a saved optimiser state, keeping this optimiser's implementation flags: the saved
    ones are those of whatever wrote it (an unfused checkpoint resumed here stays fused),
    and load_state_dict places the step counts by the flags it is given."""
    groups = [
        {**group, **{flag: mine[flag] for flag in IMPLEMENTATION_FLAGS if flag in mine}}
        for group, mine in zip(saved["param_groups"], optimizer.param_groups)
    ]
    optimizer.load_state_dict({**saved, "param_groups": groups})


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


def generate(generator, encoder, seg: torch.Tensor, real: torch.Tensor, world: World = World()):
    """A fake for the label maps `seg`, and for VAE models the encoder's (mu, logvar) of the
    real images, from which z is drawn (reparameterised); None for the others. Every process
    draws the noise of the whole global batch and takes its share, so z is what one process
    would draw."""
    if encoder is None:
        return generator(seg), None
    mu, logvar = encoder(real)
    noise = torch.randn((len(mu) * world.size, *mu.shape[1:]), dtype=mu.dtype, device=mu.device)
    return generator(seg, sample_z(mu, logvar, noise[world.share(len(noise))])), (mu, logvar)


def discriminate(discriminator, seg: torch.Tensor, fake: torch.Tensor, real: torch.Tensor):
    """D's outputs for (label map, fake) and (label map, real) pairs, from one batched pass as
    in the reference."""
    pairs = torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0)
    return split_scores(discriminator(pairs), len(fake))


def train_step(
    networks: Networks,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    seg: torch.Tensor,
    real: torch.Tensor,
    cfg: TrainingConfig,
    vgg: VGGLoss | None = None,
    autocast=contextlib.nullcontext(),
    world: World = World(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration as the reference runs it: a generator update (hinge GAN + feature matching
    + VGG + KLD), then a discriminator update on a fake made again by the updated generator.
    Returns the LOSSES (detached, weighted as optimised) and the D step's fake.

    On several processes (`world`; networks wrapped in DistributedDataParallel, which averages
    gradients) each takes its share of the batch. The mean losses need nothing more; the KLD,
    a sum over the batch, is scaled by the world size so that the averaged gradient is the sum's."""
    generator, discriminator, encoder = networks.generator, networks.discriminator, networks.encoder
    zero = torch.zeros((), device=seg.device)
    # D's gradients from the G step are thrown away: no all-reduce for them.
    with autocast, getattr(discriminator, "no_sync", contextlib.nullcontext)():
        fake, posterior = generate(generator, encoder, seg, real, world)
        loss_kld = zero
        if posterior is not None:
            loss_kld = kld_loss(*(t.float() for t in posterior)) * cfg.lambda_kld * world.size
        fake_scores, real_scores = discriminate(discriminator, seg, fake, real)
        loss_gan = g_hinge_loss(fake_scores)
        loss_feat = feature_matching_loss(real_scores, fake_scores) * cfg.lambda_feat
        loss_vgg = vgg(fake.float(), real) * cfg.lambda_vgg if vgg is not None else zero
    opt_G.zero_grad(set_to_none=True)
    (loss_gan + loss_feat + loss_vgg + loss_kld).backward()
    opt_G.step()

    with autocast:
        with torch.no_grad():
            fake = generate(generator, encoder, seg, real, world)[0].detach()
        fake_scores, real_scores = discriminate(discriminator, seg, fake, real)
        loss_d_real, loss_d_fake = d_hinge_loss(real_scores, fake_scores)
    opt_D.zero_grad(set_to_none=True)
    (loss_d_fake + loss_d_real).backward()
    opt_D.step()
    losses = {"G_gan": loss_gan, "G_feat": loss_feat, "G_vgg": loss_vgg, "G_kld": loss_kld,
              "D_real": loss_d_real, "D_fake": loss_d_fake}
    return torch.stack([losses[name] for name in LOSSES]).detach(), fake


def write_samples(labels: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, path: Path) -> None:
    """Rows: colourised label map, real image, fake image; one column per sample."""
    n = min(SAMPLES_IN_GRID, len(labels))
    rows = [colorize(labels[:n].cpu().numpy()), to_uint8_images(real[:n]), to_uint8_images(fake[:n])]
    save_png(np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0), path)


@dataclasses.dataclass
class Trainer:
    """What a training step needs, set up for its device as the config asks: fused Adam, bf16
    autocast on CUDA, channels_last where `training.channels_last` (CUDA and CPU alike: oneDNN's
    convolutions are faster in it too), DistributedDataParallel on several processes, the
    compiled modules where `training.compile`."""

    cfg: TrainingConfig
    device: torch.device
    world: World
    networks: Networks  # whose state checkpoints hold
    stepped: Networks  # what the step runs: the same modules, wrapped and compiled where asked
    opt_G: torch.optim.Adam
    opt_D: torch.optim.Adam
    vgg: VGGLoss | None
    autocast: torch.autocast
    memory_format: torch.memory_format

    @classmethod
    def create(cls, model: ModelConfig, device: torch.device, world: World = World()) -> "Trainer":
        cfg, cuda = model.training, device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        networks = build(model)
        for network in (networks.generator, networks.discriminator, networks.encoder):
            if network is not None:
                network.to(device, memory_format=memory_format)
        opt_G, opt_D = make_optimizers(networks, cfg)
        vgg = VGGLoss(imagenet_vgg19_features()).to(device) if cfg.vgg and cfg.lambda_vgg > 0 else None

        def wrapped(network: torch.nn.Module | None) -> torch.nn.Module | None:
            if network is not None and world.size > 1:
                network = DistributedDataParallel(network, device_ids=[device.index] if cuda else None)
            if network is not None and cfg.compile:
                network = torch.compile(network)
            return network

        stepped = Networks(*(wrapped(n) for n in (networks.generator, networks.discriminator, networks.encoder)))
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and cuda)
        return cls(cfg, device, world, networks, stepped, opt_G, opt_D, vgg, autocast, memory_format)

    def run_step(self, data: PairedFaces, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step `step` (counted from 0): its learning rates, this process's share of its batch,
        one train_step. Returns the logged values (LOSSES, then the fakes' spread; on the device,
        not yet synced), the uint8 label maps of the share, its real images and the D step's fakes."""
        cfg = self.cfg
        for optimizer, base in ((self.opt_G, cfg.lr_G), (self.opt_D, cfg.lr_D)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(base, step, cfg)
        share = self.world.share(cfg.batch_size)
        indices = batch_indices(step, cfg.batch_size, len(data), cfg.seed)[share]
        flips = batch_flips(step, cfg.batch_size, cfg.seed) if cfg.flip else torch.zeros(cfg.batch_size, dtype=bool)
        images_uint8, labels_uint8 = data.batch(indices, flips[share])
        real, seg = to_model_inputs(images_uint8, labels_uint8, self.device)
        real, seg = real.contiguous(memory_format=self.memory_format), seg.contiguous(memory_format=self.memory_format)
        losses, fake = train_step(
            self.stepped, self.opt_G, self.opt_D, seg, real, cfg, self.vgg, self.autocast, self.world
        )
        return torch.cat([losses, output_spread(fake, real)[None]]), labels_uint8, real, fake


def train(model: ModelConfig, image_paths: list[str], label_paths: list[str], out_dir: Path) -> None:
    """Train `model` in this process, or as one of the processes torchrun started."""
    device = resolve_device(model.training.device, f"config key training.device (model {model.name})")
    world = distributed.start(device.type)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        _train(model, image_paths, label_paths, out_dir, device, world)
    finally:
        distributed.stop()


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


def _train(
    model: ModelConfig,
    image_paths: list[str],
    label_paths: list[str],
    out_dir: Path,
    device: torch.device,
    world: World,
) -> None:
    cfg = model.training
    torch.manual_seed(cfg.seed)
    run_dir = out_dir / "runs" / run_key(model)
    if world.size == 1:
        data = PairedFaces.load(image_paths, label_paths, cfg.resolution, cfg.workers)
    else:
        # One copy per node, mapped by its processes (70,000 faces at 256x256 are 18 GB with
        # their label maps), named for this launch; copies of this run's killed launches go first.
        node_copies = Path(tempfile.gettempdir())
        prefix = f"spade-faces-{run_dir.name}-"
        if world.local_rank == 0:
            for stale in [*node_copies.glob(prefix + "*"), *node_copies.glob(f".{prefix}*")]:
                stale.unlink(missing_ok=True)
        node_copy = node_copies / f"{prefix}{os.environ['TORCHELASTIC_RUN_ID']}.u8"
        data = PairedFaces.load_shared(
            image_paths, label_paths, cfg.resolution, cfg.workers, node_copy, world.local_rank == 0, distributed.barrier
        )
    log.info("%s: %d training pairs at %dx%d on %s", model.name, len(data), cfg.resolution, cfg.resolution, device)
    log.info("%s: %d process(es), global batch %d, %d per process", model.name, world.size, cfg.batch_size,
             cfg.batch_size // world.size)
    trainer = Trainer.create(model, device, world)
    networks = trainer.networks

    log.info("%s: checkpoints, samples and the running log in %s", model.name, run_dir)
    checkpoints = Checkpoints(run_dir / "checkpoints", cfg.keep_checkpoints)
    running_log = run_dir / "train_log.csv"
    step = resume(checkpoints, networks, trainer.opt_G, trainer.opt_D)
    health = HealthWatch()
    signs: tuple[str, ...] = ()
    if world.main:
        rows = _truncate_log(running_log, step)
        signs = health.replay((float(row["D_fake"]), float(row["fake_spread"])) for row in rows)

    with (
        stop_requests() as stop_requested,
        # Line-buffered: each step's row is on disk at once, for `tail -f` and for a killed run.
        open(running_log, "a", newline="", buffering=1) if world.main else contextlib.nullcontext() as log_file,
        progress(total=cfg.iterations, initial=step, desc=f"train {model.name}", unit="step", disable=not world.main)
        as bar,
    ):
        writer = csv.writer(log_file) if world.main else None
        while step < cfg.iterations:
            started = time.perf_counter()
            values, labels_uint8, real, fake = trainer.run_step(data, step)
            step += 1
            # The one sync per step: the logged values, averaged over the processes, and whether
            # any of them was asked to stop (SLURM signals every one; all must stop at one step).
            asked = values.new_tensor([1.0 if stop_requested else 0.0])
            *losses, spread, stop = distributed.mean_over_ranks(torch.cat([values, asked])).tolist()
            rate = cfg.batch_size / (time.perf_counter() - started)
            if world.main:
                signs, was = health.update(losses[LOSSES.index("D_fake")], spread), signs
                for sign in set(signs) - set(was):
                    log.warning("%s at step %d: %s (training goes on)", model.name, step, SIGNS[sign])
                for sign in set(was) - set(signs):
                    log.info("%s at step %d: no longer %s", model.name, step, sign)
                lr_G, lr_D = trainer.opt_G.param_groups[0]["lr"], trainer.opt_D.param_groups[0]["lr"]
                writer.writerow(
                    [step, *(f"{v:.6g}" for v in losses), f"{lr_G:.6g}", f"{lr_D:.6g}", f"{rate:.2f}",
                     f"{spread:.4g}", "+".join(signs)]
                )
                bar.update()
                if step % cfg.sample_every == 0 or step == cfg.iterations:
                    write_samples(labels_uint8, real, fake, run_dir / "samples" / f"step_{step:08d}.png")
                if step % cfg.checkpoint_every == 0 or step == cfg.iterations or stop:
                    checkpoints.save(training_state(networks, trainer.opt_G, trainer.opt_D, step), step)
            if stop:
                distributed.barrier()  # no process leaves before the checkpoint is written
                log.warning("stopped by signal at step %d; checkpoint saved, a rerun resumes from it", step)
                # The signal's own status; a process stopping because another one was signalled, SIGTERM's.
                raise SystemExit(128 + (stop_requested[0] if stop_requested else signal.SIGTERM))

    if world.main:
        weights = {
            "format": NETWORK_FORMAT,
            "model": dataclasses.asdict(model),
            "generator": networks.generator.state_dict(),
            "encoder": networks.encoder.state_dict() if networks.encoder is not None else None,
        }
        with atomic_path(out_dir / "generator.pt") as tmp:
            torch.save(weights, tmp)
        with atomic_path(out_dir / "train_log.csv") as tmp:
            tmp.write_bytes(running_log.read_bytes())
        log.info("%s: trained %d steps; wrote %s", model.name, step, out_dir / "generator.pt")
    distributed.barrier()


def _truncate_log(path: Path, step: int) -> list[dict[str, str]]:
    """Keep the log rows up to `step` (rows after the last checkpoint are redone on resume);
    return them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [row for row in (read_csv(path, LOG_COLUMNS) if path.exists() else []) if int(row["step"]) <= step]
    write_csv(path, LOG_COLUMNS, ([row[c] for c in LOG_COLUMNS] for row in rows))
    return rows


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
    else:
        model = ModelConfig.from_json(args.model_json)
    # Under torchrun the job's threads are shared by the node's processes, and one of them speaks.
    torch.set_num_threads(max(1, args.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    train(model, *train_pairs(args.manifests), args.out_dir)


if __name__ == "__main__":
    cli.run(main)
