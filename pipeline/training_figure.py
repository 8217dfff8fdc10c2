"""A model's training, drawn: for each of its runs (replicates overlaid), the losses against steps
(each step's value faint, a moving mean over a window the figure names bold), the discriminator's
losses on real and fake images, the learning rates and the speed; the steps where a health sign
(pipeline.health) held are shaded and the steps a run resumed from are marked; each run's last
sample grid beside the curves. The curves are how a collapse or a dead discriminator is seen
before the table.

    python -m pipeline.training_figure --logs results/models/spade/train_log.csv \\
        --runs results/models/spade/runs/<key> --names spade --out results/figures/training/spade.png
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import cli
from pipeline.files import atomic_path, read_csv
from pipeline.layout import RunFiles
from pipeline.training_log import FOLLOWING, RESUME_COLUMNS, read_rows

# The moving mean's window: this share of a run's steps, at least one step.
SMOOTHING_SHARE = 0.02


@dataclass
class RunCurves:
    """What the figure draws of one run, read from its log and its folder."""

    name: str
    steps: np.ndarray
    losses: dict[str, np.ndarray]  # the objective's, by name (G_... and D_...)
    learning_rates: dict[str, np.ndarray]  # lr_G, lr_D
    img_per_s: np.ndarray
    health: list[tuple[str, int, int]]  # (sign, first step, last step) of each stretch it held
    resumed_from: list[int] = field(default_factory=list)
    last_samples: Path | None = None

    @property
    def window(self) -> int:
        return max(1, round(SMOOTHING_SHARE * len(self.steps)))

    def smoothed(self, values: np.ndarray) -> np.ndarray:
        """The mean over the `window` steps up to each step (fewer at the start) of the finite
        values among them: a NaN or an infinite loss (drawn faint) does not blank the rest."""
        finite = np.isfinite(values)
        sums = np.cumsum(np.concatenate([[0.0], np.where(finite, values, 0.0)]))
        counts = np.cumsum(np.concatenate([[0], finite]))
        ends = np.arange(1, len(values) + 1)
        starts = np.maximum(0, ends - self.window)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums[ends] - sums[starts]) / (counts[ends] - counts[starts])


def health_stretches(steps: np.ndarray, signs: list[str]) -> list[tuple[str, int, int]]:
    """(sign, first step, last step) of each run of consecutive rows in which `sign` held;
    `signs` are the log's health cells ("D_wins+same_output", or empty)."""
    stretches: list[tuple[str, int, int]] = []
    open_since: dict[str, int] = {}
    for index, cell in enumerate([*signs, ""]):  # an empty row at the end closes every stretch
        held = set(filter(None, cell.split("+")))
        for sign in sorted(set(open_since) - held):
            stretches.append((sign, open_since.pop(sign), int(steps[index - 1])))
        for sign in sorted(held - set(open_since)):
            open_since[sign] = int(steps[index])
    return sorted(stretches, key=lambda stretch: (stretch[1], stretch[0]))


def read_run(name: str, log_csv: Path, run: RunFiles) -> RunCurves:
    """One run's curves: its log (the copy beside generator.pt), and from its folder the steps it
    resumed from and its newest sample grid."""
    rows = read_rows(log_csv)  # none for a model of `iterations: 0`, drawn as such
    with open(log_csv, newline="") as f:
        losses = [column for column in next(csv.reader(f)) if column != "step" and column not in FOLLOWING]
    steps = np.array([int(row["step"]) for row in rows])
    resumes = read_csv(run.resumes, RESUME_COLUMNS) if run.resumes.exists() else []
    samples = sorted((run.folder / "samples").glob("step_*.png"))
    return RunCurves(
        name=name,
        steps=steps,
        losses={loss: np.array([float(row[loss]) for row in rows]) for loss in losses},
        learning_rates={lr: np.array([float(row[lr]) for row in rows]) for lr in ("lr_G", "lr_D")},
        img_per_s=np.array([float(row["img_per_s"]) for row in rows]),
        health=health_stretches(steps, [row["health"] for row in rows]),
        resumed_from=[int(row["step"]) for row in resumes],
        last_samples=samples[-1] if samples else None,
    )


def draw(runs: list[RunCurves], title: str, out: Path) -> None:
    """The figure: four panels of curves on the left (G's losses, D's, the learning rates, img/s),
    each run's last sample grid on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    grids = [run for run in runs if run.last_samples is not None]
    fig = plt.figure(figsize=(15, 11), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[3, 2] if grids else [1, 0.001])
    panels = left.subplots(4, 1, sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        tint = colours[index % len(colours)]
        label = run.name if len(runs) > 1 else None
        marker = "o" if len(run.steps) == 1 else None  # a line needs two points
        shades = ["-", "--", ":", "-."]
        for panel, prefix in ((panels[0], "G_"), (panels[1], "D_")):
            for number, (loss, values) in enumerate(item for item in run.losses.items() if item[0].startswith(prefix)):
                style = shades[number % len(shades)]
                panel.plot(run.steps, values, style, color=tint, alpha=0.2, linewidth=0.6)
                panel.plot(run.steps, run.smoothed(values), style, color=tint, linewidth=1.4, marker=marker,
                           label=f"{loss}" + (f" ({run.name})" if label else ""))  # fmt: skip
        for lr, style in (("lr_G", "-"), ("lr_D", "--")):
            panels[2].plot(run.steps, run.learning_rates[lr], style, color=tint,
                           label=lr + (f" ({run.name})" if label else ""))  # fmt: skip
        panels[3].plot(run.steps, run.img_per_s, color=tint, alpha=0.3, linewidth=0.6)
        panels[3].plot(run.steps, run.smoothed(run.img_per_s), color=tint, label=label)
        for sign, first, last in run.health:  # half a step either side: a one-step sign shows too
            for panel in panels:
                panel.axvspan(first - 0.5, last + 0.5, color="red" if sign == "D_wins" else "orange", alpha=0.12,
                              linewidth=0)  # fmt: skip
            panels[0].annotate(sign + (f" ({run.name})" if label else ""), (first, 1), xycoords=("data", "axes fraction"),
                               va="top", fontsize=8, color=tint)  # fmt: skip
        for step in run.resumed_from:
            for panel in panels:
                panel.axvline(step, color=tint, linestyle=":", linewidth=1)
            panels[0].annotate(f"resumed at {step}", (step, 0.9), xycoords=("data", "axes fraction"), fontsize=8,
                               rotation=90, va="top", color=tint)  # fmt: skip
    windows = sorted({run.window for run in runs})
    panels[0].set_title(f"{title}: faint, each step; bold, the mean over the last "
                        f"{' / '.join(map(str, windows))} steps; shaded, a health sign held; dotted, a resume")  # fmt: skip
    for panel, ylabel in zip(panels, ("generator losses", "discriminator losses", "learning rate", "img/s")):
        panel.set_ylabel(ylabel)
        if panel.get_legend_handles_labels()[0]:  # beside the panel, where many runs cannot cover it
            panel.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    panels[-1].set_xlabel("step")
    if not any(len(run.steps) for run in runs):
        panels[0].text(0.5, 0.5, "no training steps (iterations: 0)", transform=panels[0].transAxes, ha="center")
    if grids:
        axes = np.atleast_1d(right.subplots(len(grids), 1))
        for axis, run in zip(axes, grids):
            axis.imshow(np.asarray(Image.open(run.last_samples).convert("RGB")))
            step = int(run.last_samples.stem.removeprefix("step_"))
            axis.set_title(f"{run.name} at step {step}: label map, real, synthesis", fontsize=9)
            axis.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.training_figure", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--logs", type=Path, nargs="+", required=True, help="each run's train_log.csv")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="each run's folder (runs/<key>)")
    parser.add_argument("--names", nargs="+", required=True, help="each run's name (spade, spade#1, ...)")
    parser.add_argument("--title", required=True, help="the model's name")
    parser.add_argument("--out", type=Path, required=True, help="the figure (PNG)")
    args = parser.parse_args()
    if not len(args.logs) == len(args.runs) == len(args.names):
        parser.error("--logs, --runs and --names need one entry per run each")
    runs = [read_run(name, log, RunFiles(folder)) for name, log, folder in zip(args.names, args.logs, args.runs)]
    draw(runs, args.title, args.out)


if __name__ == "__main__":
    cli.run(main)
