"""Training throughput and peak memory per model variant (a benchmark, not a test).

Each variant runs the real training loop (pipeline.train.train) in its own process on
synthetic data (random images and blocky label maps) for --steps steps; the reported img/s
is the median of the loop's own per-step rate after --warmup steps; peak memory is CUDA's
max allocated on a GPU, else the process's max RSS. Like every stage's CLI, it first makes malloc
keep freed memory (pipeline.cli.keep_freed_memory; --keep-freed-memory off measures without).

    python benchmarks/train_throughput.py --resolution 64 --batch-size 4 --ngf 16 --steps 6
    python benchmarks/train_throughput.py --models spade clade clade_icpe --amp off --channels-last off
    python benchmarks/train_throughput.py --resolution 256 --batch-size 16 --amp on --channels-last on
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import cli
from pipeline.config import ModelConfig, resolve
from pipeline.labelmaps import write_label
from pipeline.train import train

MODELS = resolve()["models"]  # every model config.yaml defines
VARIANTS = resolve()["compare"]  # the default comparison


def synthetic_pairs(folder: Path, count: int, resolution: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(count):
        image, label = folder / f"{index}.png", folder / f"{index}_label.png"
        Image.fromarray(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)).save(image)
        blocks = rng.integers(0, 19, (8, 8), dtype=np.uint8)
        write_label(np.kron(blocks, np.ones((resolution // 8, resolution // 8), np.uint8)), label, "synthetic")
        images.append(str(image))
        labels.append(str(label))
    return images, labels


def measure(args: argparse.Namespace) -> dict:
    settings = {
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "iterations": args.warmup + args.steps,
        "decay_start": args.warmup + args.steps,
        "checkpoint_every": 10**6,
        "sample_every": 10**6,
        "vgg": args.vgg == "on",
        "amp": args.amp == "on",
        "channels_last": args.channels_last == "on",
        "device": args.device,
        "workers": 2,
    }
    config = resolve({"training": settings, "models": {args.model: {"ngf": args.ngf, "ndf": args.ngf}}})
    model = ModelConfig.from_config(config, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = synthetic_pairs(Path(tmp), max(args.batch_size, 8), args.resolution)
        train(model, *pairs, Path(tmp) / "out")
        with open(Path(tmp) / "out" / "train_log.csv", newline="") as f:
            rates = [float(row["img_per_s"]) for row in csv.DictReader(f)][args.warmup :]
    cuda = torch.cuda.is_available() and args.device != "cpu"
    peak_mb = (
        torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "model": args.model,
        "img_per_s": round(statistics.median(rates), 2),
        "peak_mb": round(peak_mb),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, help="one model in this process")
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=VARIANTS, help="each in its own process (default: `compare`)"
    )
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--ngf", type=int, default=64, help="generator and discriminator width")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", choices=["on", "off"], default="on")
    parser.add_argument("--channels-last", choices=["on", "off"], default="on")
    parser.add_argument("--vgg", choices=["on", "off"], default="off", help="on needs the ImageNet VGG19 weights")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--keep-freed-memory", choices=["on", "off"], default="on", help="as the stages' CLIs do")
    args = parser.parse_args()
    if args.model:
        if args.keep_freed_memory == "on":
            cli.keep_freed_memory()
        print(json.dumps(measure(args)))
        return
    options = [f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items() if key not in ("model", "models")]
    for variant in args.models:
        command = [sys.executable, __file__, *options, "--model", variant]
        result = subprocess.run(command, capture_output=True, text=True)
        print(
            result.stdout.strip().splitlines()[-1] if result.returncode == 0 else f"{variant}: failed\n{result.stderr}"
        )


if __name__ == "__main__":
    main()
