"""Our training step against NVlabs/SPADE's, side by side on the same device, settings and inputs
(a benchmark, not a test).

NVlabs' trainer is built from ../shared/reference/nvlabs-spade as its own options build it (fp32,
TF32 where torch allows, DataParallel on one GPU: its code as shipped); ours is pipeline.train's
Trainer as `train` runs it (bf16 autocast on CUDA, channels_last, fused Adam; --amp, --channels-last
and --compile change that). Both get the same synthetic batches (random images, blocky label maps)
and the same VGG19 weights (seeded: ImageNet's cannot be downloaded offline; speed does not depend
on the values). After warm-up the two alternate for --rounds rounds of --steps steps each; img/s is
the median over rounds, peak memory the largest over them (CUDA's max allocated; on the CPU the
process's resident set sampled while that side ran).

    python benchmarks/vs_reference.py --resolution 64 --batch-size 4 --ngf 16            # CPU
    python benchmarks/vs_reference.py --resolution 256 --batch-size 16 --ngf 64 --vgg on  # one GPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
import torchvision

import pipeline.models.objective
from pipeline.config import ModelConfig, resolve
from pipeline.devices import resolve_device
from pipeline.labelmaps import NUM_CLASSES
from pipeline.pairs import PairedFaces
from pipeline.train import Trainer

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("PIPELINE_SHARED", REPO.parent / "shared")) / "reference" / "nvlabs-spade"


def synthetic_faces(count: int, resolution: int) -> PairedFaces:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, resolution, resolution), dtype=torch.uint8, generator=generator)
    blocks = torch.randint(0, NUM_CLASSES, (count, 8, 8), dtype=torch.uint8, generator=generator)
    labels = blocks.repeat_interleave(resolution // 8, 1).repeat_interleave(resolution // 8, 2)
    return PairedFaces(images, labels)


VGG19 = torchvision.models.vgg19


def seeded_vgg19(**kwargs) -> torch.nn.Module:
    """torchvision's VGG19 with seeded weights, whatever pretrained weights are asked for."""
    torch.manual_seed(0)
    return VGG19()


class NVlabs:
    """NVlabs' Pix2PixTrainer for the benchmark's settings."""

    def __init__(self, args: argparse.Namespace, device: torch.device, workdir: Path) -> None:
        sys.path.insert(0, str(REFERENCE))
        # util.util imports dill only to pickle objects to files, which a benchmark never does.
        sys.modules.setdefault("dill", pickle)
        torchvision.models.vgg19 = seeded_vgg19  # NVlabs asks for pretrained=True: not offline
        from models.networks.architecture import VGG19
        from options.train_options import TrainOptions
        from trainers.pix2pix_trainer import Pix2PixTrainer

        if device.type == "cpu":
            VGG19.cuda = lambda self: self  # its VGGLoss puts VGG19 on the GPU unconditionally
        sys.argv = [
            "train.py", "--name", "benchmark", "--checkpoints_dir", str(workdir), "--dataset_mode", "custom",
            "--label_dir", str(workdir), "--image_dir", str(workdir), "--label_nc", str(NUM_CLASSES),
            "--no_instance", "--crop_size", str(args.resolution), "--load_size", str(args.resolution),
            "--aspect_ratio", "1", "--gpu_ids", "0" if device.type == "cuda" else "-1",
            "--norm_G", "spectralspadebatch3x3", "--batchSize", str(args.batch_size),
            "--ngf", str(args.ngf), "--ndf", str(args.ngf), *([] if args.vgg == "on" else ["--no_vgg_loss"]),
        ]  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            self.trainer = Pix2PixTrainer(TrainOptions().parse())
        self.batch_size = args.batch_size

    def step(self, data: PairedFaces, step: int) -> None:
        first = step * self.batch_size % (len(data) - self.batch_size + 1)
        images, labels = data.images[first : first + self.batch_size], data.labels[first : first + self.batch_size]
        batch = {
            "label": labels[:, None].float(),
            "instance": torch.zeros(1),
            "image": images.float() / 127.5 - 1,
            "path": None,
        }
        self.trainer.run_generator_one_step(batch)
        self.trainer.run_discriminator_one_step(batch)


class Ours:
    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        pipeline.models.objective.imagenet_vgg19_features = lambda: seeded_vgg19().features  # offline, as NVlabs'
        settings = {
            "resolution": args.resolution, "batch_size": args.batch_size, "vgg": args.vgg == "on",
            "amp": args.amp == "on", "channels_last": args.channels_last == "on", "compile": args.compile == "on",
            "flip": False,
        }  # fmt: skip
        config = resolve({"training": settings, "models": {"spade": {"ngf": args.ngf, "ndf": args.ngf}}})
        self.trainer = Trainer.create(ModelConfig.from_config(config, "spade"), device)

    def step(self, data: PairedFaces, step: int) -> None:
        self.trainer.run_step(data)[0].tolist()  # the loop's sync per step


class PeakMemory:
    """Peak memory while a block runs: CUDA's max allocated, or the process's sampled RSS."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.peak_mb = 0.0

    @contextlib.contextmanager
    def measure(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            yield
            self.peak_mb = max(self.peak_mb, torch.cuda.max_memory_allocated() / 2**20)
            return
        process, done = psutil.Process(), threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            yield
        finally:
            done.set()
            sampler.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--ngf", type=int, default=16, help="generator and discriminator width (NVlabs' default: 64)")
    parser.add_argument("--vgg", choices=["on", "off"], default="off")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--amp", choices=["on", "off"], default="on", help="ours: bf16 autocast (CUDA only)")
    parser.add_argument("--channels-last", choices=["on", "off"], default="on", help="ours")
    parser.add_argument("--compile", choices=["on", "off"], default="off", help="ours: torch.compile")
    parser.add_argument("--warmup", type=int, default=3, help="steps of each before timing")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    args = parser.parse_args()
    if not (REFERENCE / "trainers").is_dir():
        print(f"skipped: NVlabs' code is not at {REFERENCE} (set PIPELINE_SHARED)")
        return
    device = resolve_device(args.device, "--device")
    cuda = device.type == "cuda"
    data = synthetic_faces(max(64, 4 * args.batch_size), args.resolution)
    with tempfile.TemporaryDirectory() as workdir:
        torch.manual_seed(0)
        sides = {"NVlabs": NVlabs(args, device, Path(workdir)), "ours": Ours(args, device)}
        memory = {name: PeakMemory(device) for name in sides}
        rates: dict[str, list[float]] = {name: [] for name in sides}
        steps = {name: 0 for name in sides}

        def run(name: str, count: int) -> float:
            started = time.perf_counter()
            for _ in range(count):
                sides[name].step(data, steps[name])
                steps[name] += 1
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - started

        for name in sides:
            run(name, args.warmup)
        for _ in range(args.rounds):
            for name in sides:
                with memory[name].measure():
                    rates[name].append(args.steps * args.batch_size / run(name, args.steps))

    where = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{where}, torch {torch.__version__}, {args.resolution}x{args.resolution}, batch {args.batch_size}, "
          f"ngf=ndf {args.ngf}, VGG {args.vgg}; ours: amp {args.amp if cuda else 'off (CPU)'}, "
          f"channels_last {args.channels_last}, compile {args.compile}")
    for name in sides:
        print(f"{name:>7}: {statistics.median(rates[name]):8.2f} img/s (rounds: "
              f"{', '.join(f'{r:.2f}' for r in rates[name])}), peak {memory[name].peak_mb:,.0f} MB"
              + ("" if cuda else " (the process's, holding both)"))
    print(f"  ratio: {statistics.median(rates['ours']) / statistics.median(rates['NVlabs']):.2f} x NVlabs' img/s")


if __name__ == "__main__":
    main()
