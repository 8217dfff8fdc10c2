"""What every stage's entry point shares: malloc keeps freed memory for the next step."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from support import REPO

# A generator pass and its backward, as a training step runs them, after what a stage's entry
# point does first (mode "cli") or not ("default"); prints the page faults per pass after two
# passes of warm-up.
FAULTS_PER_PASS = """
import resource, sys, torch
from pipeline import cli
from pipeline.config import ModelConfig, resolve
from pipeline.models.networks import build
if sys.argv[1] == "cli":
    cli.run(lambda: None)
config = resolve({"training": {"resolution": 64}, "models": {"spade": {"ngf": 8, "ndf": 8}}})
generator = build(ModelConfig.from_config(config, "spade")).generator
seg = torch.nn.functional.one_hot(torch.randint(0, 19, (4, 64, 64)), 19).permute(0, 3, 1, 2).float()
for _ in range(2):
    generator(seg).sum().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    generator(seg).sum().backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""
# What changes malloc or how pages come: the comparison is of glibc's defaults with our setting.
ALLOCATOR_ENVIRONMENT = ("LD_PRELOAD", "GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE")


def faults_per_pass(mode: str) -> float:
    env = {key: value for key, value in os.environ.items()
           if key not in ALLOCATOR_ENVIRONMENT and not key.startswith("MALLOC_")}  # fmt: skip
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_PASS, mode], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_a_stages_entry_point_spares_the_page_faults_of_every_training_pass():
    """By default glibc hands big freed blocks back to the OS and faults them in again on the
    next pass (measured here: 20,000-28,000 faults per pass); kept, hardly any come back (0 to
    a few hundred, as the heap still grows now and then)."""
    default = faults_per_pass("default")
    if default < 1000:
        pytest.skip(f"only {default:.0f} page faults per pass with malloc's defaults here: nothing to spare")
    kept = faults_per_pass("cli")
    assert kept < default / 10, (kept, default)
