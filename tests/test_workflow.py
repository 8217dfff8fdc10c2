"""The Snakemake workflow itself: lint, offline dry run, config errors before any job, and a
real run of the data rule against a loopback FFHQ mirror."""

from __future__ import annotations

import csv
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from support import (
    REPO,
    SMOKE_COMPARE,
    SMOKE_ITERATIONS,
    data_section,
    fingerprint,
    keep_run,
    md5,
    smoke_config,
    snakemake,
)

from pipeline import distributed, launch
from pipeline.config import ModelConfig, resolve
from pipeline.data.split import read_split
from pipeline.files import file_digest
from pipeline.labelmaps import read_label
from pipeline.parse.manifest import read_manifest


def test_lint_is_clean(tmp_path):
    result = snakemake("--lint", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_dry_run_of_the_split_works_offline(tmp_path):
    result = snakemake("-n", "results/data/split.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "checkpoint split:" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("configfile", [None, "tests/smoke/config.yaml", "workflow/demo/config.yaml"])
@pytest.mark.parametrize("profile", [[], ["--workflow-profile", "none"]])
def test_dry_run_of_the_whole_table_works_from_an_empty_directory(tmp_path, configfile, profile):
    """The first command many users type, before the split checkpoint has ever run: every job up
    to the table is planned and its shell command printed (the evaluation's named inputs
    included), and nothing is written."""
    config = ["--configfile=" + str(REPO / configfile)] if configfile else []
    result = snakemake("results/table.csv", "-n", "--printshellcmds", *profile, *config, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "checkpoint split:" in output and "rule table:" in output
    assert re.search(r"pipeline\.evaluate row --name real --truth results/real/\d+/truth", output)
    assert not (tmp_path / "results").exists()


def test_bad_config_stops_before_any_job_naming_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("data:\n  ffhq:\n    workers: 0\n")
    result = snakemake("results/data/split.csv", "--cores", "1", "--configfile", "bad.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "config key data.ffhq.workers: 0 is less than the minimum of 1" in result.stderr
    assert not (tmp_path / "results").exists()


def test_split_rule_downloads_from_a_loopback_mirror(fake_ffhq, tmp_path):
    section = data_section(fake_ffhq, Path("resources/ffhq"), subsample=8)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"data": section}))
    result = snakemake("results/data/split.csv", "--cores", "2", "--configfile", "run.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + (tmp_path / "results/logs/data/split.log").read_text()
    rows = read_split(tmp_path / "results/data/split.csv")
    assert len(rows) == 8 and sum(row.split == "test" for row in rows) == 2
    for row in rows:
        assert file_digest(tmp_path / row.path, "md5") == md5(fake_ffhq.images[row.image_id])
    assert "wrote results/data/split.csv: 6 train, 2 test images" in (tmp_path / "results/logs/data/split.log").read_text()
    assert (tmp_path / "results/benchmarks/data/split.tsv").exists()


def test_failed_download_leaves_no_split(fake_ffhq, tmp_path):
    fake_ffhq.missing.add("00001")
    section = data_section(fake_ffhq, Path("resources/ffhq"))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"data": section}))
    result = snakemake("results/data/split.csv", "--cores", "1", "--configfile", "run.yaml", cwd=tmp_path)
    assert result.returncode != 0
    log = (tmp_path / "results/logs/data/split.log").read_text()
    assert "1 of 12 downloads failed: 00001" in log
    assert not (tmp_path / "results/data/split.csv").exists()


def plan_of_one_model(smoke: dict, run_dir: Path) -> str:
    """The dry run of the table after `smoke` is written as the run's config: one model's jobs
    (one training, its synthesis, re-segmentation and evaluation, the model's training figure) and
    the table, nothing else."""
    (run_dir / "smoke.yaml").write_text(yaml.safe_dump(smoke))
    plan = snakemake("results/table.csv", "-n", "--configfile", "smoke.yaml", cwd=run_dir)
    assert plan.returncode == 0, plan.stderr
    planned = set(re.findall(r"^(\w+)\s+\d+\s*$", plan.stdout, flags=re.M)) - {"total", "job"}
    assert planned == {"train", "synthesize", "resegment", "evaluate", "training_figure", "table"}, plan.stdout
    assert re.search(r"^train\s+1\s*$", plan.stdout, flags=re.M), plan.stdout
    return plan.stdout


def test_smoke_config_runs_from_nothing_to_the_table(shared, tmp_path):
    """The smoke configuration with three models (SPADE with and without its VAE, pix2pixHD) and
    30 steps, not 200, to keep the suite short (every variant trains in test_train.py). Its table
    and job times are kept for the crash test, which compares a recovered run with this one."""
    smoke = smoke_config(tmp_path, compare=SMOKE_COMPARE, iterations=SMOKE_ITERATIONS)
    result = snakemake("parse_all", "--cores", "2", "--configfile", "smoke.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_split(tmp_path / "results/data/split.csv")
    assert len(rows) == 40 and sum(row.split == "test" for row in rows) == 10

    manifests = sorted((tmp_path / "results/labels/shards").glob("*.csv"))
    assert [m.name for m in manifests] == ["0.csv", "1.csv", "2.csv"]  # 40 images in shards of 16
    listed = [row for m in manifests for row in read_manifest(m)]
    assert [row["image_id"] for row in listed] == [row.image_id for row in rows]
    for row in listed:
        assert read_label(tmp_path / row["label"]).shape == (256, 256)
    with Image.open(tmp_path / "results/labels/preview.png") as preview:
        assert preview.width > 6 * 150
    assert "parsed 8, 0 were already done" in (tmp_path / "results/logs/parse/shard_2.log").read_text()

    table = snakemake("results/table.csv", "--cores", "2", "--configfile", "smoke.yaml", cwd=tmp_path, timeout=900)
    assert table.returncode == 0, table.stderr
    for model in smoke["compare"]:
        weights = torch.load(tmp_path / f"results/models/{model}/generator.pt", weights_only=True)
        assert weights["model"]["name"] == model and weights["model"]["ngf"] == 8
        log_rows = (tmp_path / f"results/models/{model}/train_log.csv").read_text().splitlines()
        assert len(log_rows) == 1 + smoke["training"]["iterations"]
        assert len(list((tmp_path / f"results/synth/{model}").glob("*.png"))) == 10
    with open(tmp_path / "results/table.csv", newline="") as f:
        table_rows = list(csv.DictReader(f))
    assert [r["model"] for r in table_rows] == [*smoke["compare"], "real"]
    for r in table_rows:
        assert 0 <= float(r["pixel_accuracy_low"]) <= float(r["pixel_accuracy"]) <= float(r["pixel_accuracy_high"]) <= 1
        assert 0 <= float(r["mIoU"]) <= 1 and float(r["FID"]) > 0 and r["n_test"] == "10" and r["resolution"] == "64"
    training_figures = [f"figures/training/{model}.png" for model in smoke["compare"]]
    for output in ("table.md", "per_class_iou.csv", "figures/samples.png", "figures/per_class_iou.png", *training_figures):
        assert (tmp_path / "results" / output).exists(), output
    key = fingerprint("smoke", SMOKE_COMPARE, SMOKE_ITERATIONS, made_by=Path(__file__))
    keep_run("smoke", key, tmp_path, ["results/table.csv", "results/benchmarks"])
    report = snakemake("--report", "report.html", "--configfile", "smoke.yaml", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert all(f"How {model} trained" in (tmp_path / "report.html").read_text() for model in smoke["compare"])

    # A second training run of spade: one more training job (its synthesis, re-segmentation and
    # evaluation, and the table); spade's first run is kept as it is.
    smoke["models"]["spade"]["training"] = {"replicates": 2}
    assert "results/models/spade#1/generator.pt" in plan_of_one_model(smoke, tmp_path)
    first = {path: (tmp_path / path).stat().st_mtime_ns for path in ("results/models/spade/generator.pt",
                                                                     "results/metrics/spade.json")}  # fmt: skip
    grown = snakemake("results/table.csv", "--cores", "2", "--configfile", "smoke.yaml", cwd=tmp_path, timeout=600)
    assert grown.returncode == 0, grown.stderr
    assert {path: (tmp_path / path).stat().st_mtime_ns for path in first} == first
    weights = [torch.load(tmp_path / f"results/models/{run}/generator.pt", weights_only=True)
               for run in ("spade", "spade#1")]  # fmt: skip
    assert weights[1]["model"]["training"]["replicate"] == 1
    generators = [w["generator"] for w in weights]
    assert any(not torch.equal(a, b) for a, b in zip(generators[0].values(), generators[1].values()))
    with open(tmp_path / "results/table.csv", newline="") as f:
        spade = next(r for r in csv.DictReader(f) if r["model"] == "spade")
    assert spade["replicates"] == "2" and float(spade["mIoU_sd"]) > 0 and float(spade["FID_sd"]) > 0
    assert float(spade["mIoU_low"]) <= float(spade["mIoU"]) <= float(spade["mIoU_high"])
    with open(tmp_path / "results/table_runs.csv", newline="") as f:
        runs = [(r["model"], r["run"], r["replicate"]) for r in csv.DictReader(f)]
    assert runs == [("spade", "spade", "0"), ("spade", "spade#1", "1"), ("spade_vae", "spade_vae", "0"),
                    ("pix2pixhd", "pix2pixhd", "0"), ("real", "real", "0")]  # fmt: skip
    with open(tmp_path / "results/pairwise.csv", newline="") as f:
        pairs = {(r["a"], r["b"]) for r in csv.DictReader(f)}
    assert pairs == {("spade", "spade_vae"), ("spade", "pix2pixhd"), ("spade_vae", "pix2pixhd")}
    markdown = (tmp_path / "results/table.md").read_text()
    assert "### Which differences hold" in markdown and re.search(r"^\| spade( ⚠)? \| [^|]+ \| 2† \|", markdown, re.M)
    assert (tmp_path / "results/figures/replicates.png").stat().st_size > 10_000

    # Changing one model's settings reruns that model's jobs and the table, nothing else.
    smoke["models"]["spade_vae"]["training"] = {"lr_G": 0.0002}
    plan_of_one_model(smoke, tmp_path)

    # Parsing is done and stays done; a forced parsing shard skips the label maps it already made.
    # (Last, since the manifests it writes again are newer than everything after them.)
    again = snakemake("parse_all", "--cores", "2", "--configfile", "smoke.yaml", cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr
    forced = snakemake("parse_all", "--cores", "2", "--configfile", "smoke.yaml", "--forcerun", "parse_shard",
                       cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "parsed 0, 16 were already done" in (tmp_path / "results/logs/parse/shard_0.log").read_text()


def test_missing_users_weights_file_is_named_before_any_job(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for index in range(4):
        Image.new("RGB", (8, 8), (index, 0, 0)).save(faces / f"{index:05d}.png")
    (tmp_path / "run.yaml").write_text(
        f"data: {{source: folder, folder: {faces}, subsample: 4, test_fraction: 0.25}}\n"
        "parsing: {weights: /no/such/bisenet.pth}\n"
    )
    result = snakemake("parse_all", "--cores", "1", "--configfile", "run.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "/no/such/bisenet.pth" in result.stdout + result.stderr
    assert not (tmp_path / "results/labels").exists()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.data", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_with_a_config_file(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for index in range(6):
        Image.new("RGB", (8, 8), (index, 0, 0)).save(faces / f"{index:05d}.png")
    (tmp_path / "run.yaml").write_text(f"data: {{source: folder, folder: {faces}, subsample: 5, test_fraction: 0.2}}\n")
    result = run_cli("--configfile", "run.yaml", "--out", "split.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [row.split for row in read_split(tmp_path / "split.csv")].count("test") == 1


def test_cli_error_is_one_line_naming_the_key_and_writes_nothing(tmp_path):
    (tmp_path / "bad.yaml").write_text("data: {source: folder, folder: /no/such/dir}\n")
    result = run_cli("--configfile", "bad.yaml", "--out", "split.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("config key data.folder: /no/such/dir is not a directory")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "split.csv").exists()


@pytest.mark.parametrize(
    "training, launcher",
    [
        ({}, "python -m pipeline.train "),
        ({"gpus": 4}, "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=240 torchrun --standalone --nproc-per-node 4 -m pipeline.train "),
        ({"gpus": 4, "nodes": 2},
         "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=240 srun --kill-on-bad-exit=1 --ntasks-per-node=1 torchrun --nnodes 2 "
         "--nproc-per-node 4 --rdzv-backend c10d"),
    ],
)
def test_the_train_rule_launches_one_process_or_torchrun_per_node(tmp_path, training, launcher):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"training": {"batch_size": 16, **training}}))
    (tmp_path / "results/data").mkdir(parents=True)  # an existing split, so the checkpoint resolves
    with open(tmp_path / "results/data/split.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image_id", "split", "path"], ["0", "train", "0.png"], ["1", "test", "1.png"]])
    result = snakemake("results/models/spade/generator.pt", "-n", "--printshellcmds", "--configfile", "run.yaml",
                       cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stdout.splitlines() if "-m pipeline.train" in line)
    assert launcher in command
    if training.get("nodes", 1) > 1:
        assert "--rdzv-id $SLURM_JOB_ID" in command and "scontrol show hostnames $SLURM_JOB_NODELIST" in command


def test_torchruns_grace_is_the_rules_setting_where_torch_reads_it_else_30_seconds(monkeypatch):
    from torch.distributed.launcher import api

    monkeypatch.setenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(launch.SHUTDOWN_TIMEOUT_S))
    assert distributed.torchrun_grace_s() == launch.SHUTDOWN_TIMEOUT_S  # the pinned torch reads it

    @dataclasses.dataclass
    class LaunchConfigWithoutShutdownTimeout:  # as torch 2.11's launcher is
        min_nodes: int
        max_nodes: int

    monkeypatch.setattr(api, "LaunchConfig", LaunchConfigWithoutShutdownTimeout)
    assert distributed.torchrun_grace_s() == 30


def test_slurms_warning_before_the_time_limit_leaves_torchruns_grace_and_a_minute():
    """Rank 0 saves within torchrun's shutdown timeout after a SIGTERM, which SLURM sends a set
    time before the job's limit (the profile's --signal=TERM@N)."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    warning = int(re.search(r"--signal=TERM@(\d+)", profile["set-resources"]["train"]["slurm_extra"])[1])
    assert warning >= launch.SHUTDOWN_TIMEOUT_S + 60


@pytest.mark.parametrize(
    "device, gpus, nodes, gpu, gres, tasks",
    [("auto", 1, 1, 1, None, None), ("cpu", 2, 1, None, None, None), ("cuda", 4, 1, 4, None, None),
     ("auto", 4, 2, None, "gpu:4", 2), ("cpu", 2, 2, None, None, 2)],
)
def test_a_train_job_asks_for_its_gpus_on_its_node_or_per_node(device, gpus, nodes, gpu, gres, tasks):
    """One node: Snakemake's `gpu` resource (so that local jobs never share GPUs); several nodes:
    SLURM's gres per node and one task (a torchrun) per node; on the CPU, no GPU at all."""
    training = ModelConfig.from_config(resolve({"training": {"device": device, "gpus": gpus, "nodes": nodes}}),
                                       "spade").training
    assert launch.one_node_gpus(training) == gpu
    assert launch.gres_per_node(training) == gres
    assert launch.multi_node(training, training.nodes) == tasks
