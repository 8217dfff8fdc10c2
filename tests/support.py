"""What the tests share: the offline data beside the checkout (../shared), stand-in faces without
it, configs for small runs, and the workflow run as a subprocess. Fixtures are in conftest.py."""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from pytorch_fid.inception import FID_WEIGHTS_URL

from pipeline import launch
from pipeline.config import ModelConfig, resolve
from pipeline.labelmaps import CLASS_NAMES
from pipeline.layout import parse_replicate

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "smoke" / "config.yaml"
# pytorch-fid's file name for its FID Inception weights (the torch hub cache's, ../shared's).
INCEPTION_WEIGHTS = FID_WEIGHTS_URL.rsplit("/", 1)[-1]


def shared_root() -> Path:
    """../shared (test data that must never be committed): $PIPELINE_SHARED, else beside the checkout."""
    return Path(os.environ.get("PIPELINE_SHARED", REPO.parent / "shared"))


def shared_dir() -> Path | None:
    """shared_root() when it holds the offline FFHQ sample, else None."""
    candidate = shared_root()
    return candidate if (candidate / "data" / "faces").is_dir() else None


def shared_inception() -> Path:
    """The offline rebuild of pytorch-fid's Inception weights in ../shared (FID only)."""
    return shared_root() / "weights" / INCEPTION_WEIGHTS


def face_images(count: int) -> dict[str, bytes]:
    """`count` face files by id: real FFHQ JPEGs from ../shared, or generated PNGs without it."""
    shared = shared_dir()
    if shared is not None:
        files = sorted((shared / "data" / "faces").glob("*.jpg"))[:count]
        return {path.stem: path.read_bytes() for path in files}
    rng = np.random.default_rng(0)
    images = {}
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
        images[f"{index:05d}"] = buffer.getvalue()
    return images


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def data_section(fake, download_dir: Path, **overrides) -> dict:
    """A validated `data` config section that downloads from a FakeFfhqServer, fast to fail and retry."""
    ffhq = {
        "metadata": f"{fake.base_url}/ffhq-dataset-v2.json",
        "metadata_md5": md5(fake.metadata_bytes()),
        "mirror": f"{fake.base_url}/mirror",
        "dir": str(download_dir),
        "workers": 4,
        "retries": 2,
        "timeout_s": 0.5,
        "backoff_s": 0.01,
        **overrides.pop("ffhq", {}),
    }
    section = {"source": "ffhq", "subsample": None, "test_fraction": 0.25, "seed": 0, "ffhq": ffhq, **overrides}
    return resolve({"data": section})["data"]


# The smoke run the workflow test makes and the crash test compares its recovered run with.
SMOKE_COMPARE = ["spade", "spade_vae", "pix2pixhd"]
SMOKE_ITERATIONS = 30


def smoke_config(run_dir: Path, compare: list[str], iterations: int = 4, models: dict | None = None) -> dict:
    """tests/smoke/config.yaml made to run from `run_dir` (its ../shared paths made absolute) with
    fewer models and steps (and `models` entries updated), written to run_dir/smoke.yaml with the
    seeded parser weights it names."""
    from seeded_parser import write_seeded_weights

    smoke = yaml.safe_load(SMOKE.read_text())
    smoke["data"]["folder"] = str(shared_root() / "data" / "faces")
    smoke["metrics"]["inception_weights"] = str(shared_inception())
    smoke["training"].update(iterations=iterations, decay_start=iterations // 2, checkpoint_every=2, sample_every=2)
    smoke["compare"] = compare
    for name, settings in (models or {}).items():
        smoke["models"][name] = {**smoke["models"][name], **settings}
    write_seeded_weights(run_dir / smoke["parsing"]["weights"])
    (run_dir / "smoke.yaml").write_text(yaml.safe_dump(smoke))
    return smoke


def fingerprint(*settings, made_by: Path | None = None) -> str:
    """What a run made by the tests depends on besides `settings`: the package, the workflow,
    config.yaml, the tests' helpers, smoke configuration and stand-in parser, the test file that
    makes it (`made_by`), the versions of the libraries that compute, the CPU (rounding) and
    ../shared's faces. Two test sessions of one checkout on one machine share a run only when all
    of these are the same."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    code = [*(REPO / "pipeline").rglob("*.py"), REPO / "Snakefile", *(REPO / "workflow").rglob("*"),
            REPO / "config.yaml", SMOKE, Path(__file__), REPO / "tests" / "seeded_parser.py", *([made_by] if made_by else [])]
    for path in sorted(p for p in code if p.is_file()):
        digest.update(path.relative_to(REPO).as_posix().encode() + path.read_bytes())
    for package in ("torch", "torchvision", "numpy", "pillow", "scipy", "snakemake", "facexlib", "pytorch-fid"):
        digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    cpu = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    digest.update(f"{platform.machine()} {cpu}".encode())
    faces = shared_root() / "data" / "faces"
    for face in sorted(faces.iterdir()) if faces.is_dir() else []:
        digest.update(f"{face.name}:{face.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def kept_run(name: str, key: str) -> Path:
    """Where a run the tests made is kept for others that only need its outputs (.cache/ is
    git-ignored): .cache/tests/{name}/{key}."""
    return REPO / ".cache" / "tests" / name / key


def keep_run(name: str, key: str, source: Path, parts: list[str]) -> Path:
    """Keep `parts` (paths relative to `source`) of a finished run under kept_run(name, key),
    whole or not at all; a run already kept stays as it is."""
    target = kept_run(name, key)
    if not target.exists():
        staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        for part in parts:
            (staging / part).parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if (source / part).is_dir() else shutil.copy2
            copy(source / part, staging / part)
        try:
            os.replace(staging, target)
        except OSError:  # another session kept the same run meanwhile
            shutil.rmtree(staging)
            if not target.exists():
                raise
    return target


def snakemake_command(cwd: Path, *args: str) -> list[str]:
    """This project's workflow run by this interpreter's Snakemake in `cwd`."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(cwd), *args]


def snakemake_env(env: dict | None = None) -> dict:
    # Rules call `python`: make it this interpreter, with the package and its dependencies.
    return {**(env or os.environ), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(cwd, *args), capture_output=True, text=True, timeout=timeout, env=snakemake_env(env), cwd=cwd
    )


def rule_blocks() -> dict[str, str]:
    """The text of each rule in workflow/rules that runs something, by name."""
    blocks = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        # A rule may be indented under an `if` that chooses between two rules (the label maps' source).
        for block in re.split(r"^(?=[ \t]*(?:rule|checkpoint) \w+:)", smk.read_text(), flags=re.M)[1:]:
            if "shell:" in block:  # a target rule that only gathers inputs runs nothing
                blocks[re.match(r"\s*(?:rule|checkpoint) (\w+):", block).group(1)] = block
    return blocks


# --- small training runs -------------------------------------------------------------------

L_EYE, R_EYE, SKIN = (CLASS_NAMES.index(name) for name in ("l_eye", "r_eye", "skin"))


def tiny_model(name: str = "spade", **training) -> ModelConfig:
    """Model `name` of the defaults at 32x32, ngf = ndf = 8, a few steps (`training` overrides)."""
    settings = {"resolution": 32, "batch_size": 2, "iterations": 4, "decay_start": 2, "checkpoint_every": 2,
                "sample_every": 2, "vgg": False, "workers": 1, **training}
    config = resolve({"training": settings, "models": {name: {"ngf": 8, "ndf": 8}}, "compare": [name]})
    return ModelConfig.from_config(config, name)


def read_log(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if k != "health"} for row in csv.DictReader(f)]


def run_training(
    workdir: Path, pairs, iterations: int, device: str = "cpu", model: str = "spade_vae", processes: int = 1,
    **training,
) -> subprocess.Popen:
    """The CLI on a one-shard manifest, in a subprocess (in its own process group) that a test
    can signal; with torchrun's processes (gloo) when `processes` > 1."""
    images, labels = pairs
    manifest = workdir / "shard.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "split", "path", "label"])
        writer.writerows((Path(i).stem, "train", i, label) for i, label in zip(images, labels))
    name, replicate = parse_replicate(model)  # `model` may be a further training run, e.g. spade_vae#1
    # OASIS's discriminator halves the image 6 times.
    settings = {"resolution": 64 if name == "oasis" else 32, "batch_size": 2, "iterations": iterations,
                "decay_start": 12, "checkpoint_every": 3, "sample_every": 100, "vgg": False, "workers": 1,
                "device": device, "gpus": processes, "replicates": replicate + 1, **training}
    config = {"training": settings, "models": {name: {"ngf": 8, "ndf": 8}}, "compare": [name]}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    launcher = launcher if processes > 1 else []
    grace = {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(launch.SHUTDOWN_TIMEOUT_S)}  # as the train rule starts torchrun
    return subprocess.Popen(
        [sys.executable, *launcher, "-m", "pipeline.train", "--configfile", "config.yaml", "--model", model,
         "--manifests", "shard.csv", "--out-dir", "out", "--threads", str(processes)],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **grace}, start_new_session=True,
    )


def wait_for_log_rows(workdir: Path, rows: int, process: subprocess.Popen) -> None:
    """Until the run's running log (out/runs/<key>/train_log.csv) has `rows` steps."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        for log in (workdir / "out" / "runs").glob("*/train_log.csv"):
            if len(log.read_text().splitlines()) > rows:
                return
        time.sleep(0.02)
    raise AssertionError(f"training did not reach {rows} steps: {process.stderr.read() if process.stderr else ''}")


def final_weights(workdir: Path) -> dict:
    return torch.load(workdir / "out" / "generator.pt", weights_only=True)
