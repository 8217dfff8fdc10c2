"""A training run's log: one CSV row per step with its losses (named by the model's objective),
the learning rates, the speed and the signs of a failed run (pipeline.health). Training keeps it
in the run's folder, a row at a time, and copies it beside generator.pt when it ends; the
evaluation reads the copy for the table's training hours and health."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from pipeline.errors import PipelineError
from pipeline.files import read_csv, write_csv
from pipeline.health import SIGNS, HealthWatch
from pipeline.layout import RunFiles

# Its lines are training's, in the train job's log.
log = logging.getLogger("pipeline.train")

# After the step and its losses: fake_spread and health are pipeline.health's watch.
FOLLOWING = ("lr_G", "lr_D", "img_per_s", "fake_spread", "health")
# A run's resumes.csv: the step of each checkpoint it resumed from.
RESUME_COLUMNS = ("step",)


def columns(losses: Sequence[str]) -> tuple[str, ...]:
    return ("step", *losses, *FOLLOWING)


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a finished run's log, whatever losses its model logged."""
    with open(path, newline="") as f:
        header = tuple(next(csv.reader(f), ()))
    if header[:1] != ("step",) or header[-len(FOLLOWING) :] != FOLLOWING:
        raise PipelineError(f"{path}: not a training log (columns step, losses..., {', '.join(FOLLOWING)})")
    return read_csv(path, header)


class TrainingLog:
    """The running log of one training run: resumed at the step of the checkpoint it resumes
    from (later rows are dropped, since those steps are taken again, and the rows kept are
    replayed into the health watch; the step is added to the run's resumes.csv), then written a
    row per step, each on disk at once (for `tail -f`, and for a run that is killed). With
    `tensorboard`, the same values and the sample grids go to TensorBoard event files in the run's
    folder too."""

    def __init__(self, run: RunFiles, losses: Sequence[str], fake_loss: str, name: str, tensorboard: bool = False):
        """`losses`: the model's objective's, in the order of the logged values; `fake_loss`: the
        one of them the health watch follows (the discriminator's loss on fakes)."""
        self.run, self.path, self.losses, self.fake_loss, self.name = run, run.log, tuple(losses), fake_loss, name
        self.columns = columns(losses)
        self.health = HealthWatch()
        self.signs: tuple[str, ...] = ()
        self.tensorboard = tensorboard
        self._board = None

    @contextmanager
    def resumed(self, step: int, iterations: int) -> Iterator[None]:
        """The log as of `step`, open for the rows that follow until `iterations` (a run started
        again after its last step resumes nothing: no resume is recorded)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = read_csv(self.path, self.columns) if self.path.exists() else []
        rows = [row for row in rows if int(row["step"]) <= step]
        write_csv(self.path, self.columns, ([row[c] for c in self.columns] for row in rows))
        self.signs = self.health.replay((float(row[self.fake_loss]), float(row["fake_spread"])) for row in rows)
        if 0 < step < iterations:  # a resume: earlier resumes past this checkpoint were undone with their steps
            resumes = read_csv(self.run.resumes, RESUME_COLUMNS) if self.run.resumes.exists() else []
            kept = [[row["step"]] for row in resumes if int(row["step"]) < step]
            write_csv(self.run.resumes, RESUME_COLUMNS, [*kept, [step]])
        # Line-buffered: each row reaches the file when it is written.
        with open(self.path, "a", newline="", buffering=1) as f, self._tensorboard(step):
            self._writer = csv.writer(f)
            yield

    @contextmanager
    def _tensorboard(self, step: int) -> Iterator[None]:
        if not self.tensorboard:
            yield
            return
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides what an earlier attempt logged after `step` (those steps
        # are taken again), so that each step's values appear once and in order.
        self._board = SummaryWriter(str(self.run.folder), purge_step=step + 1)
        try:
            yield
        finally:
            self._board.close()
            self._board = None

    def write(self, step: int, values: Sequence[float], learning_rates: tuple[float, float], img_per_s: float) -> None:
        """One step's row: `values` are the losses, then the fakes' spread."""
        *losses, spread = values
        signs, was = self.health.update(losses[self.losses.index(self.fake_loss)], spread), self.signs
        for sign in set(signs) - set(was):
            log.warning("%s at step %d: %s (training goes on)", self.name, step, SIGNS[sign])
        for sign in set(was) - set(signs):
            log.info("%s at step %d: no longer %s", self.name, step, sign)
        self.signs = signs
        numbers = [f"{value:.6g}" for value in (*losses, *learning_rates)]
        self._writer.writerow([step, *numbers, f"{img_per_s:.2f}", f"{spread:.4g}", "+".join(signs)])
        if self._board is not None:
            scalars = {**{f"loss/{name}": value for name, value in zip(self.losses, losses)},
                       "learning_rate/G": learning_rates[0], "learning_rate/D": learning_rates[1],
                       "speed/img_per_s": img_per_s, "health/fake_spread": spread}  # fmt: skip
            for tag, value in scalars.items():
                self._board.add_scalar(tag, float(value), step)
            self._board.flush()  # on disk with the row: a killed run loses neither

    def samples(self, step: int, grid: np.ndarray) -> None:
        """A sample grid (H x W x 3, uint8) to TensorBoard, where it is written."""
        if self._board is not None:
            self._board.add_image("samples", grid, step, dataformats="HWC")
            self._board.flush()
