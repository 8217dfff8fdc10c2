"""FID and KID: pytorch-fid's Fréchet distance on the same statistics, KID's unbiasedness on toy
features, errors for empty folders and missing weights, and agreement with the pytorch_fid CLI
on real faces when the offline Inception weights are present."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance
from support import INCEPTION_WEIGHTS, REPO, shared_inception, shared_root

from pipeline.errors import PipelineError
from pipeline.fid import Statistics, _unbiased_mmd2, frechet_distance, image_files, kernel_inception_distance


def test_fid_of_a_set_with_itself_is_zero_and_equals_pytorch_fids_on_the_same_statistics():
    rng = np.random.default_rng(0)
    a, b = Statistics.of(rng.normal(size=(300, 16))), Statistics.of(rng.normal(0.5, 1.2, size=(300, 16)))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, b) == calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert frechet_distance(a, b) > 1


def test_statistics_round_trip_through_a_file(tmp_path):
    stats = Statistics.of(np.random.default_rng(0).normal(size=(10, 4)))
    stats.save(tmp_path / "real.npz")
    loaded = Statistics.load(tmp_path / "real.npz")
    assert np.array_equal(loaded.mu, stats.mu) and np.array_equal(loaded.features, stats.features)


def test_kid_is_unbiased_for_samples_of_one_distribution_and_positive_for_different_ones():
    rng = np.random.default_rng(0)
    same = [_unbiased_mmd2(rng.normal(size=(20, 8)), rng.normal(size=(20, 8))) for _ in range(400)]
    standard_error = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * standard_error  # zero in expectation, as unbiased must be

    # The biased (V-statistic) estimate, which keeps each sample's kernel with itself, is not.
    def biased(x, y):
        d = x.shape[1]
        return ((x @ x.T / d + 1) ** 3).mean() + ((y @ y.T / d + 1) ** 3).mean() - 2 * ((x @ y.T / d + 1) ** 3).mean()

    biased_values = [biased(rng.normal(size=(20, 8)), rng.normal(size=(20, 8))) for _ in range(400)]
    assert np.mean(biased_values) > 10 * standard_error

    kid, kid_std = kernel_inception_distance(
        rng.normal(size=(200, 8)), rng.normal(1, 1, size=(200, 8)), subsets=20, subset_size=50
    )
    assert kid > 0 and kid_std > 0


def test_kid_has_no_spread_when_every_subset_would_be_the_whole_set():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 8)), rng.normal(1, 1, size=(30, 8))
    kid, kid_std = kernel_inception_distance(a, b, subsets=20, subset_size=50)
    assert kid == pytest.approx(_unbiased_mmd2(a, b)) and kid_std is None
    assert kernel_inception_distance(a, rng.normal(size=(60, 8)), subsets=20, subset_size=50)[1] > 0


def test_features_pytorch_fid_does_not_have_are_a_config_error():
    from pipeline.fid import inception

    with pytest.raises(PipelineError, match=r"metrics.fid_dims 100: pytorch-fid has \[64, 192, 768, 2048\]"):
        inception(None, "cpu", 100)


def test_empty_or_missing_folders_are_errors(tmp_path):
    with pytest.raises(PipelineError, match="no images"):
        image_files(tmp_path)
    with pytest.raises(PipelineError, match="not a directory"):
        image_files(tmp_path / "missing")


def run_fid(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.fid", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_missing_inception_weights_are_one_clear_line(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "a.png")
    missing = run_fid(str(folder), str(folder), "--weights", str(tmp_path / "none.pth"))
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        .splitlines()[-1]
        .endswith(f"metrics.inception_weights {tmp_path / 'none.pth'}: no such file")
    )
    offline = run_fid(
        str(folder),
        str(folder),
        env={
            "TORCH_HOME": str(tmp_path / "torch"),
            "https_proxy": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
        },
    )
    assert offline.returncode == 1
    line = offline.stderr.strip().splitlines()[-1]
    assert "cannot get pytorch-fid's Inception weights from https://github.com/mseitzer/pytorch-fid" in line
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_WEIGHTS) in line
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").glob("*"))  # nothing half-downloaded


SHARED_WEIGHTS = shared_inception()
NO_WEIGHTS = f"needs {SHARED_WEIGHTS}, the offline rebuild of pytorch-fid's weights (set PIPELINE_SHARED)"


def two_face_folders(tmp_path, count: int) -> tuple[str, str]:
    """Folders a and b of `count` different real faces each."""
    faces = sorted((shared_root() / "data" / "faces").glob("*.jpg"))
    for name, chosen in (("a", faces[:count]), ("b", faces[count : 2 * count])):
        (tmp_path / name).mkdir()
        for face in chosen:
            shutil.copy(face, tmp_path / name)
    return str(tmp_path / "a"), str(tmp_path / "b")


@pytest.mark.skipif(not SHARED_WEIGHTS.exists(), reason=NO_WEIGHTS)
@pytest.mark.parametrize("dims", [2048, 64])
def test_pipeline_fid_equals_the_pytorch_fid_cli_on_real_faces(tmp_path, dims):
    """pool3's features, and (metrics.fid_dims) the first block's, as pytorch-fid's --dims."""
    a, b = two_face_folders(tmp_path, 12)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / SHARED_WEIGHTS.name).symlink_to(SHARED_WEIGHTS)
    reference = subprocess.run(
        [sys.executable, "-m", "pytorch_fid", a, b, "--device", "cpu", "--dims", str(dims)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TORCH_HOME": str(tmp_path / "torch")},
    )
    assert reference.returncode == 0, reference.stderr
    expected = float(reference.stdout.split("FID:")[1])
    ours = run_fid(a, b, "--weights", str(SHARED_WEIGHTS), "--device", "cpu", "--dims", str(dims), "--json")
    assert ours.returncode == 0, ours.stderr
    result = json.loads(ours.stdout)
    assert abs(result["FID"] - expected) / expected < 1e-3
    assert result["FID_unstable"] is True and f"fewer than {dims}" in ours.stderr
    assert result["n"] == [12, 12]


@pytest.mark.gpu
@pytest.mark.skipif(not SHARED_WEIGHTS.exists(), reason=NO_WEIGHTS)
def test_fid_on_cuda_equals_fid_on_the_cpu(tmp_path, record_property):
    a, b = two_face_folders(tmp_path, 24)
    results = {}
    for device in ("cpu", "cuda"):
        run = run_fid(a, b, "--weights", str(SHARED_WEIGHTS), "--device", device, "--json")
        assert run.returncode == 0, run.stderr
        results[device] = json.loads(run.stdout)["FID"]
    difference = abs(results["cuda"] - results["cpu"]) / results["cpu"]
    record_property("relative_difference", difference)  # the GPU check reports it
    assert difference < 1e-3
