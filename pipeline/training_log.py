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
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.files import read_csv, write_csv
from pipeline.health import SIGNS, HealthWatch

# Its lines are training's, in the train job's log.
log = logging.getLogger("pipeline.train")

# After the step and its losses: fake_spread and health are pipeline.health's watch.
FOLLOWING = ("lr_G", "lr_D", "img_per_s", "fake_spread", "health")


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
    replayed into the health watch), then written a row per step, each on disk at once (for
    `tail -f`, and for a run that is killed)."""

    def __init__(self, path: Path, losses: Sequence[str], fake_loss: str, name: str) -> None:
        """`losses`: the model's objective's, in the order of the logged values; `fake_loss`: the
        one of them the health watch follows (the discriminator's loss on fakes)."""
        self.path, self.losses, self.fake_loss, self.name = path, tuple(losses), fake_loss, name
        self.columns = columns(losses)
        self.health = HealthWatch()
        self.signs: tuple[str, ...] = ()

    @contextmanager
    def resumed(self, step: int) -> Iterator[None]:
        """The log as of `step`, open for the rows that follow."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = read_csv(self.path, self.columns) if self.path.exists() else []
        rows = [row for row in rows if int(row["step"]) <= step]
        write_csv(self.path, self.columns, ([row[c] for c in self.columns] for row in rows))
        self.signs = self.health.replay((float(row[self.fake_loss]), float(row["fake_spread"])) for row in rows)
        # Line-buffered: each row reaches the file when it is written.
        with open(self.path, "a", newline="", buffering=1) as f:
            self._writer = csv.writer(f)
            yield

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
