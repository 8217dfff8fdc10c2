"""Time Snakemake's dry run of the full pipeline once the split exists (a benchmark, not a test).

Writes a split of N images (ids and paths only: a dry run never opens them) into a scratch run
directory with `data.subsample: null`, then times `snakemake results/table.csv -n` there, for
each N given. The job count should grow by shards of `parsing.shard_size`, not by images.

    python benchmarks/dag_build.py --images 10000 70000
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run(n_images: int, test_fraction: float = 0.2) -> tuple[float, int]:
    """(seconds, planned jobs) of `snakemake -n` on a split of n_images."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        (run / "results/data").mkdir(parents=True)
        with open(run / "results/data/split.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", "split", "path"])
            test_every = round(1 / test_fraction)
            for i in range(n_images):
                split = "test" if i % test_every == test_every - 1 else "train"
                writer.writerow([f"{i:05d}", split, f"resources/ffhq/{i:05d}.png"])
        (run / "run.yaml").write_text(f"data: {{subsample: null, test_fraction: {test_fraction}}}\n")
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "results/table.csv",
                   "-n", "--quiet", "rules", "--configfile", "run.yaml"]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=run, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
    total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, flags=re.M)
    return seconds, int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 70_000])
    args = parser.parse_args()
    for n_images in args.images:
        seconds, jobs = dry_run(n_images)
        print(f"{n_images} images: {jobs} jobs planned, dry run {seconds:.1f} s")


if __name__ == "__main__":
    main()
