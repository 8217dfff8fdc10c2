"""The training figure (pipeline.training_figure): what it draws of a run's log and folder, a
resume and a health sign among it, and the figure of several runs overlaid."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from support import REPO

from pipeline.files import write_csv
from pipeline.images import save_png
from pipeline.layout import RunFiles
from pipeline.training_figure import health_stretches, read_run
from pipeline.training_log import RESUME_COLUMNS, TrainingLog, columns

LOSSES = ("G_gan", "G_feat", "D_real", "D_fake")


def write_run(folder, steps: int, resumed_from: list[int], health: dict[int, str]) -> tuple:
    """A finished run's log (the copy beside generator.pt) and its folder, with sample grids."""
    run = RunFiles(folder / "runs" / "key")
    rows = [[step, 2.0 + np.sin(step), 1.0, 0.5 + 0.01 * step, 0.4, 2e-4, 2e-4, 10.0, 0.3, health.get(step, "")]
            for step in range(1, steps + 1)]  # fmt: skip
    log_csv = folder / "train_log.csv"
    write_csv(log_csv, columns(LOSSES), rows)
    write_csv(run.resumes, RESUME_COLUMNS, [[step] for step in resumed_from])
    for step in (50, 100):
        save_png(np.full((12, 8, 3), step, np.uint8), run.samples(step))
    return log_csv, run


def test_the_figure_draws_each_step_a_resume_a_health_sign_and_the_last_samples(tmp_path):
    health = {step: "same_output" for step in range(40, 61)} | {70: "D_wins+same_output", 71: "D_wins"}
    log_csv, run = write_run(tmp_path, 100, [30, 80], health)
    curves = read_run("spade", log_csv, run)
    assert curves.steps.tolist() == list(range(1, 101))
    assert list(curves.losses) == list(LOSSES) and curves.losses["D_real"][9] == pytest.approx(0.6)
    assert curves.resumed_from == [30, 80]
    assert curves.health == [("same_output", 40, 60), ("D_wins", 70, 71), ("same_output", 70, 70)]
    assert curves.last_samples == run.samples(100)
    # The moving mean: the window the title names, over the steps up to each one.
    assert curves.window == 2
    values = curves.losses["G_gan"]
    np.testing.assert_allclose(curves.smoothed(values)[[0, 1, 50]], [values[0], values[:2].mean(), values[49:51].mean()])
    values[50] = np.nan  # a diverged step: the mean goes on over the finite values
    np.testing.assert_allclose(curves.smoothed(values)[[50, 51]], [values[49], values[51]])


def test_health_stretches_close_where_a_sign_stops_and_at_the_end():
    steps = np.arange(1, 7)
    assert health_stretches(steps, ["", "D_wins", "D_wins", "", "same_output", "same_output"]) == [
        ("D_wins", 2, 3), ("same_output", 5, 6)]  # fmt: skip


def test_a_resume_is_recorded_in_the_runs_resumes_and_a_fresh_start_is_not(tmp_path):
    run = RunFiles(tmp_path / "run")
    training_log = TrainingLog(run, LOSSES, "D_fake", "spade")
    with training_log.resumed(0, 10):
        training_log.write(1, [1.0, 1.0, 1.0, 1.0, 0.5], (2e-4, 2e-4), 10.0)
    assert not run.resumes.exists()
    for step in (1, 1):
        with training_log.resumed(step, 10):
            training_log.write(step + 1, [1.0, 1.0, 1.0, 1.0, 0.5], (2e-4, 2e-4), 10.0)
    assert run.resumes.read_text().split() == ["step", "1"]  # the same checkpoint again: one resume
    with training_log.resumed(2, 10):
        pass
    with training_log.resumed(1, 10):  # back to an older checkpoint: the resume past it is undone
        pass
    assert run.resumes.read_text().split() == ["step", "1"]
    with training_log.resumed(10, 10):  # started again once finished: nothing resumed
        pass
    assert run.resumes.read_text().split() == ["step", "1"]


def test_the_cli_overlays_the_runs_of_a_model(tmp_path):
    runs = [write_run(tmp_path / "a", 120, [60], {70: "D_wins"}), write_run(tmp_path / "b", 1, [], {}),
            write_run(tmp_path / "c", 0, [], {})]  # a model of `iterations: 0` logs no step
    out = tmp_path / "figures" / "training" / "spade.png"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.training_figure", "--logs", *(str(log) for log, _ in runs),
         "--runs", *(str(run.folder) for _, run in runs), "--names", "spade", "spade#1", "spade#2", "--title", "spade",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(out.parent.glob("*.tmp*"))
    missing = subprocess.run([sys.executable, "-m", "pipeline.training_figure", "--logs", str(tmp_path / "none.csv"),
                              "--runs", str(tmp_path), "--names", "spade", "--title", "spade", "--out", str(out)],
                             cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert missing.returncode != 0 and "none.csv" in missing.stderr.strip().splitlines()[-1]
