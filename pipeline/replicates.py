"""A model's training runs (replicates) combined into its table row, and which differences
between rows hold.

A GAN trained twice moves its scores by more than many differences between models, so a row
reports the mean over its runs, their sd and a 95% interval over both the training runs and the
test images: a hierarchical bootstrap (pipeline.metrics) that resamples each row's runs and, for
accuracy and mIoU, the test images, one image draw shared by every row so that differences are
paired over images. FID and KID are resampled over runs only: each resample of images would cost a
2048-d Fréchet distance per run. With fewer than MIN_RUNS runs the between-run part is not
estimated: accuracy and mIoU intervals cover the test images only, FID and KID have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from pipeline.errors import PipelineError
from pipeline.labelmaps import CLASS_NAMES
from pipeline.layout import parse_replicate
from pipeline.metrics import (
    image_draws,
    percentile_interval,
    replicate_draws,
    segmentation_draws,
    value_draws,
)

# Fewer runs than this estimate no between-run spread: two runs give an sd with one degree of
# freedom, and their bootstrap only two distinct means.
MIN_RUNS = 3
# Resampled per image and run (from the per-image confusion matrices), by the suffix of their
# columns: against the input label maps, and against the parse of the real photo where it exists.
SEGMENTATION = ("pixel_accuracy", "mIoU")
TRUTHS = {"": "confusions", "_parse": "confusions_parse"}
# Resampled over runs only.
IMAGE_SET = ("FID", "KID")
# What the pairwise table compares.
COMPARED = ("pixel_accuracy", "mIoU", "FID", "KID")
# What an interval covers (table.csv's and pairwise.csv's `interval_over`).
OVER_RUNS_AND_IMAGES = "runs and test images"
OVER_IMAGES = "test images"
OVER_RUNS = "training runs"
# The range a row's interval is clipped to: the widening for few runs (pipeline.metrics) is
# unbounded, and an interval past 100% accuracy or below 0 FID claims what no run can score.
RANGES = {"pixel_accuracy": (0.0, 1.0), "mIoU": (0.0, 1.0), "FID": (0.0, np.inf)}


@dataclass
class Row:
    """One table row: a model's runs (or the real images), their metrics as evaluate wrote them
    and their per-image confusion matrices (`TRUTHS` values, each runs x images x K x K)."""

    model: str
    runs: list[dict]
    confusions: dict[str, np.ndarray]

    @property
    def between_runs(self) -> bool:
        """Whether the row's intervals include the spread between training runs."""
        return len(self.runs) >= MIN_RUNS


def group_runs(runs: list[dict], confusions: list[dict[str, np.ndarray]], sources: list[str]) -> list[Row]:
    """The runs (evaluate's metrics and confusion files, `sources` naming the latter for errors)
    grouped into rows by model (`spade`, `spade#1`, ... are one row), in the order first seen.
    Every run must have been scored on the same test images."""
    rows: dict[str, Row] = {}
    ids = confusions[0]["image_ids"]
    for run, arrays, source in zip(runs, confusions, sources):
        if not np.array_equal(arrays["image_ids"], ids):
            raise PipelineError(f"{source}: scored on other test images than {sources[0]}")
        model = parse_replicate(run["model"])[0]
        row = rows.setdefault(model, Row(model, [], {}))
        row.runs.append(run)
        for name in TRUTHS.values():
            if name in arrays:
                row.confusions.setdefault(name, []).append(arrays[name])
    for row in rows.values():
        row.confusions = {name: np.stack(stack) for name, stack in row.confusions.items()}
    return list(rows.values())


def _values(row: Row, key: str) -> np.ndarray | None:
    values = [run.get(key) for run in row.runs]
    return None if any(value is None for value in values) else np.array(values, dtype=np.float64)


@dataclass(frozen=True)
class Draws:
    """A row's resampled statistics, metric -> (resamples,). `over_runs`: its runs resampled too
    where it has MIN_RUNS of them (FID and KID only then); `over_images`: every run in every
    resample, accuracy and mIoU only."""

    over_runs: dict[str, np.ndarray]
    over_images: dict[str, np.ndarray]


def _segmentation(row: Row, images: np.ndarray, runs: np.ndarray) -> dict[str, np.ndarray]:
    return {metric + suffix: values for suffix, name in TRUTHS.items() if name in row.confusions
            for metric, values in segmentation_draws(row.confusions[name], images, runs).items()}  # fmt: skip


def resample(rows: list[Row], resamples: int, seed: int = 0) -> list[Draws]:
    """Each row's resampled statistics: one image draw for all rows, a replicate draw of each
    row's own (its position in the table seeds it)."""
    images = image_draws(len(rows[0].confusions["confusions"][0]), resamples, seed)
    out = []
    for index, row in enumerate(rows):
        over_images = _segmentation(row, images, np.ones((resamples, len(row.runs)), dtype=np.int64))
        over_runs = over_images
        if row.between_runs:
            runs = replicate_draws(len(row.runs), resamples, seed + 1 + index)
            over_runs = _segmentation(row, images, runs)
            for metric in IMAGE_SET:
                values = _values(row, metric)
                if values is not None:
                    over_runs[metric] = value_draws(values, runs)
        out.append(Draws(over_runs, over_images))
    return out


def _clipped(metric: str, low: float, high: float) -> tuple[float, float]:
    floor, ceiling = RANGES.get(metric.removesuffix("_parse"), (-np.inf, np.inf))
    return float(np.clip(low, floor, ceiling)), float(np.clip(high, floor, ceiling))


def summarize(row: Row, draws: Draws) -> dict:
    """The row's table entry: replicate 0's description, each metric's mean over the runs, their
    sd (None for one run) and interval (None where not estimated; clipped to the metric's range),
    the mean per-class IoU, and its runs' training hours together."""
    first = row.runs[0]
    out = {**first, "model": row.model, "replicates": len(row.runs),
           "interval_over": OVER_RUNS_AND_IMAGES if row.between_runs else OVER_IMAGES}  # fmt: skip
    metrics = [m + suffix for suffix, name in TRUTHS.items() if name in row.confusions for m in SEGMENTATION]
    for metric in [*metrics, *IMAGE_SET]:
        values = _values(row, metric)
        if values is None:
            continue
        out[metric] = float(values.mean())
        out[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else None
        interval = percentile_interval(draws.over_runs[metric]) if metric in draws.over_runs else None
        out[f"{metric}_low"], out[f"{metric}_high"] = (None, None) if interval is None else _clipped(
            metric, interval.low, interval.high)
    if len(row.runs) > 1:
        out["KID_std"] = None  # the subset std of one run; the runs' sd takes its place
    out["FID_unstable"] = any(run["FID_unstable"] for run in row.runs)
    out["train_hours"] = None if first["train_hours"] is None else sum(run["train_hours"] for run in row.runs)
    out["health"] = "+".join(dict.fromkeys(s for run in row.runs for s in run["health"].split("+") if s))
    out["per_class_iou"] = {
        name: (None if all(run["per_class_iou"][name] is None for run in row.runs) else
               float(np.mean([run["per_class_iou"][name] for run in row.runs
                              if run["per_class_iou"][name] is not None])))
        for name in CLASS_NAMES
    }  # fmt: skip
    return out


@dataclass(frozen=True)
class Difference:
    """A minus b in one metric, and the 95% interval of that difference (None: not estimated)
    over what `interval_over` says: training runs and test images only where both rows estimate
    their between-run spread."""

    a: str
    b: str
    metric: str
    difference: float
    low: float | None
    high: float | None
    interval_over: str | None

    @property
    def holds(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def pairwise(rows: list[Row], summaries: list[dict], draws: list[Draws]) -> list[Difference]:
    """Every pair of rows, in table order, in each COMPARED metric. The interval comes from the
    same resamples as the rows' own (paired over test images): over both rows' runs too where
    both estimate their between-run spread, else over test images only (and none for FID and
    KID)."""
    out = []
    for (i, a), (j, b) in combinations(enumerate(rows), 2):
        for metric in COMPARED:
            if summaries[i].get(metric) is None or summaries[j].get(metric) is None:
                continue
            difference = summaries[i][metric] - summaries[j][metric]
            both = a.between_runs and b.between_runs
            source = [d.over_runs if both else d.over_images for d in (draws[i], draws[j])]
            if metric in source[0] and metric in source[1]:
                interval = percentile_interval(source[0][metric] - source[1][metric])
                over = OVER_IMAGES if not both else OVER_RUNS if metric in IMAGE_SET else OVER_RUNS_AND_IMAGES
                out.append(Difference(a.model, b.model, metric, difference, interval.low, interval.high, over))
            else:
                out.append(Difference(a.model, b.model, metric, difference, None, None, None))
    return out
