from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from fake_ffhq import FakeFfhq, FakeFfhqServer  # noqa: E402

from pipeline.config import validate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """../shared (test data that must never be committed): $PIPELINE_SHARED, else beside the checkout."""
    return Path(os.environ.get("PIPELINE_SHARED", REPO.parent / "shared"))


def shared_dir() -> Path | None:
    """shared_root() when it holds the offline FFHQ sample, else None."""
    candidate = shared_root()
    return candidate if (candidate / "data" / "faces").is_dir() else None


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


@pytest.fixture
def fake_ffhq():
    with FakeFfhqServer(FakeFfhq(images=face_images(12))) as fake:
        yield fake


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def data_section(fake: FakeFfhq, download_dir: Path, **overrides) -> dict:
    """A validated `data` config section that downloads from `fake`, fast to fail and retry."""
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
    return validate({"data": section})["data"]


def smoke_config(run_dir: Path, compare: list[str], iterations: int = 4, models: dict | None = None) -> dict:
    """tests/smoke/config.yaml made to run from `run_dir` (its ../shared paths made absolute) with
    fewer models and steps (and `models` entries updated), written to run_dir/smoke.yaml with the
    seeded parser weights it names."""
    from seeded_parser import write_seeded_weights

    smoke = yaml.safe_load((REPO / "tests/smoke/config.yaml").read_text())
    smoke["data"]["folder"] = str(shared_dir() / "data" / "faces")
    smoke["metrics"]["inception_weights"] = str(shared_dir() / "weights" / "pt_inception-2015-12-05-6726825d.pth")
    smoke["training"].update(iterations=iterations, decay_start=iterations // 2, checkpoint_every=2, sample_every=2)
    smoke["compare"] = compare
    for name, settings in (models or {}).items():
        smoke["models"][name] = {**smoke["models"][name], **settings}
    write_seeded_weights(run_dir / smoke["parsing"]["weights"])
    (run_dir / "smoke.yaml").write_text(yaml.safe_dump(smoke))
    return smoke


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
