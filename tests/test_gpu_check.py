"""The GPU check (benchmarks/gpu_check.py) in its CPU mode: every part runs, at tiny sizes, and
writes every figure the GPU run is read for, so that the script works when a GPU is next lent."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from support import REPO, shared_root

sys.path.insert(0, str(REPO / "benchmarks"))
from gpu_check import GPU_TEST_FILES  # noqa: E402

# What each part writes besides its status and seconds: the figures docs/benchmarks.md quotes.
FIGURES = {
    "train_resume": {"steps", "stopped_at", "resumed_from", "logged_steps", "img_per_s_median", "generator_written"},
    "torchrun": {"logged_steps", "generator_written", "process_group", "all_reduce_ok"},
    "gpu_tests": {"passed", "failed", "error", "skipped", "not_passed", "measured", "files"},
    "side_by_side_bf16": {"NVlabs_img_per_s", "NVlabs_peak_mb", "ours_img_per_s", "ours_peak_mb", "ratio"},
    "side_by_side_fp32": {"NVlabs_img_per_s", "NVlabs_peak_mb", "ours_img_per_s", "ours_peak_mb", "ratio"},
    "fid_throughput": {"images", "features", "images_per_s", "seconds_for_10000_images"},
    "parse_throughput": {"decode_images_per_s", "parse_images_per_s", "parse_over_decode", "precision"},
}


@pytest.mark.skipif(not (shared_root() / "reference" / "nvlabs-spade").is_dir(),
                    reason=f"needs NVlabs' code in {shared_root() / 'reference'} (set PIPELINE_SHARED)")  # fmt: skip
def test_the_gpu_checks_cpu_mode_runs_every_part_and_writes_every_figure(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path), "--cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"date", "command", "mode", "device", "torch", "cuda", "python"} <= report.keys()
    assert report["mode"] == "cpu" and report["device"].startswith("CPU")
    parts = report["parts"]
    assert list(parts) == ["install", *FIGURES]
    assert parts["install"]["status"] == "skipped"  # no --wheels: it would install into this environment
    for name, figures in FIGURES.items():
        assert parts[name]["status"] == "ok", (name, parts[name])
        assert figures <= parts[name].keys(), (name, figures - parts[name].keys())
    # Each part did its work, not only ran: the GPU tests were found (and skip without CUDA), the
    # run stopped part-way and resumed from its checkpoint to the end, the process group reduced.
    assert parts["gpu_tests"]["skipped"] > 0 and parts["gpu_tests"]["passed"] == parts["gpu_tests"]["failed"] == 0
    resume = parts["train_resume"]
    assert 0 < resume["stopped_at"] < resume["steps"] == resume["logged_steps"]
    assert resume["resumed_from"] == resume["stopped_at"] and resume["generator_written"]
    assert parts["torchrun"]["process_group"] == "gloo" and parts["torchrun"]["all_reduce_ok"]
    assert parts["fid_throughput"]["features"] == 2048
    assert list(parts["gpu_tests"]["files"]) == [" ".join(GPU_TEST_FILES)]  # one run on the CPU
    log = (tmp_path / "gpu_check.log").read_text()
    assert all(f"=== {name}" in log for name in FIGURES)


def test_the_gpu_check_names_every_test_file_that_holds_gpu_tests():
    marked = re.compile(r"@pytest\.mark\.gpu|marks=pytest\.mark\.gpu")
    holding = {f"tests/{path.name}" for path in (REPO / "tests").glob("test_*.py") if marked.search(path.read_text())}
    assert holding == set(GPU_TEST_FILES)
