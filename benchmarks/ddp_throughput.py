"""Training img/s on 1 and on N processes (torchrun, DistributedDataParallel), the same global
batch and model, through the training CLI (a benchmark, not a test).

On the CPU this is a plumbing figure, not a speed claim: N processes share the same cores. On a
node with N GPUs it shows the scaling of one node (--device cuda).

    python benchmarks/ddp_throughput.py --processes 2 --resolution 64 --batch-size 4 --ngf 16
    python benchmarks/ddp_throughput.py --processes 8 --device cuda --resolution 256 --batch-size 16 --ngf 64
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import synthetic_pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def measure(processes: int, args: argparse.Namespace, workdir: Path, pairs: tuple[list[str], list[str]]) -> float:
    run = workdir / f"{processes}"
    run.mkdir()
    with open(run / "shard.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "split", "path", "label"])
        writer.writerows((Path(image).stem, "train", image, label) for image, label in zip(*pairs))
    training = {
        "resolution": args.resolution, "batch_size": args.batch_size, "iterations": args.warmup + args.steps,
        "decay_start": 10**6, "checkpoint_every": 10**6, "sample_every": 10**6, "vgg": False, "device": args.device,
        "gpus": processes, "workers": 2,
    }  # fmt: skip
    model = {"generator": "spade", "ngf": args.ngf, "ndf": args.ngf}
    (run / "config.yaml").write_text(yaml.safe_dump({"training": training, "models": {"spade": model}, "compare": ["spade"]}))
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "pipeline.train", "--configfile", "config.yaml", "--model", "spade",
               "--manifests", "shard.csv", "--out-dir", "out", "--threads", str(args.threads)]
    subprocess.run(command, cwd=run, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    with open(run / "out" / "train_log.csv", newline="") as f:
        rates = [float(row["img_per_s"]) for row in csv.DictReader(f)][args.warmup :]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4, help="the global batch")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the job (shared by its processes)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = synthetic_pairs(Path(tmp), max(16, args.batch_size), args.resolution)
        for processes in (1, args.processes):
            print(f"{processes} process(es): {measure(processes, args, Path(tmp), pairs):.2f} img/s "
                  f"({args.resolution}x{args.resolution}, global batch {args.batch_size}, ngf {args.ngf}, {args.device})")


if __name__ == "__main__":
    main()
