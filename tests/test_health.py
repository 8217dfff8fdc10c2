"""Training watches its own health: a collapsed run is logged, written to train_log.csv and
flagged in its table row, and training goes on."""

from __future__ import annotations

import csv
import logging
import math

import pytest
import torch
from support import tiny_model

from pipeline.data.procedural import write_faces
from pipeline.evaluate import training_summary
from pipeline.health import WINDOW, HealthWatch, output_spread
from pipeline.train import train


def test_output_spread_is_zero_for_one_image_everywhere_and_one_for_the_real_spread():
    real = torch.rand(4, 3, 8, 8)
    assert output_spread(real[:1].expand(4, -1, -1, -1), real).item() == 0
    assert output_spread(real, real).item() == pytest.approx(1)
    assert math.isnan(output_spread(real[:1], real[:1]).item())


def feed(watch: HealthWatch, steps: int, d_fake: float, spread: float) -> list[tuple[str, ...]]:
    return [watch.update(d_fake, spread) for _ in range(steps)]


def test_a_healthy_run_shows_no_sign_and_a_collapse_shows_both_after_the_warm_up():
    assert set(feed(HealthWatch(), 4 * WINDOW, d_fake=0.7, spread=0.6)) == {()}

    watch = HealthWatch()
    signs = feed(watch, 2 * WINDOW, d_fake=0.0, spread=0.01)
    assert set(signs[:-1]) == {()}  # judged from step 2 x WINDOW on: every generator starts grey
    assert signs[-1] == ("D_wins", "same_output")
    # a recovery clears them once most of the window is healthy again
    assert feed(watch, WINDOW // 2 + 1, d_fake=0.8, spread=0.5)[-1] == ()


def test_a_batch_of_one_says_nothing_about_the_spread():
    watch = HealthWatch()
    assert feed(watch, 3 * WINDOW, d_fake=0.5, spread=float("nan"))[-1] == ()


def test_a_resumed_watch_replays_the_log_to_the_same_signs():
    rows = [(0.0, 0.01)] * (2 * WINDOW)
    assert HealthWatch().replay(rows) == ("D_wins", "same_output")


@pytest.fixture(scope="module")
def procedural_pairs(tmp_path_factory) -> tuple[list[str], list[str]]:
    """16 procedural faces: label maps as varied as faces' (pipeline/data/procedural.py)."""
    folder = tmp_path_factory.mktemp("procedural")
    ids = write_faces(folder, range(16), size=64)
    return [str(folder / "images" / f"{i}.png") for i in ids], [str(folder / "labels" / f"{i}.png") for i in ids]


def test_a_deliberately_collapsing_run_is_flagged_in_its_log_and_row_and_finishes(procedural_pairs, tmp_path, caplog):
    """pix2pixHD with a learning rate 500 x the reference's: G saturates to one image for every
    label map within ~100 steps (measured in docs/benchmarks.md)."""
    model = tiny_model("pix2pixhd", iterations=2 * WINDOW + 50, decay_start=1000, batch_size=4, lr_G=0.05,
                       flip=False, checkpoint_every=1000, sample_every=1000)
    with caplog.at_level(logging.WARNING, logger="pipeline.train"):
        train(model, *procedural_pairs, tmp_path)
    assert (tmp_path / "generator.pt").exists()  # training went on to the end
    with open(tmp_path / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == model.training.iterations
    assert {row["health"] for row in rows[: 2 * WINDOW - 1]} == {""}
    # Once G has collapsed it stays so. (Whether D also wins within these steps depends on
    # rounding, e.g. the memory format: the unit tests above cover that sign.)
    assert all("same_output" in row["health"] for row in rows[2 * WINDOW :])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("syntheses of different label maps are nearly identical" in w for w in warnings)

    summary = training_summary(tmp_path / "generator.pt", tmp_path / "train_log.csv", "prior")
    assert summary["health"] == rows[-1]["health"] and "same_output" in summary["health"]
    assert summary["settings"].startswith("pix2pixhd, ngf=8, ndf=8")
    assert "lr_G=0.05" in summary["settings"] and "iterations" not in summary["settings"]
