"""`python -m pipeline.table`: the comparison tables and figures from the per-row metrics.

results/table.csv (one row per model over its training runs, then `real`, each with its
protocol), results/table_runs.csv (one line per run), results/pairwise.csv (each pair of models'
differences with their intervals), results/table.md (the protocol, then the table in the style
of the SPADE paper's Table 1, the differences that hold, then what papers report for the same
models: beside our rows only where a metric's protocol matches, else apart),
results/per_class_iou.csv, and the figures: the runs' scores with each row's interval, a
per-class IoU chart and a grid of test images (label map | real | each model).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline import cli, protocol, replicates
from pipeline.config import DataConfig
from pipeline.files import atomic_path, write_csv
from pipeline.health import describe
from pipeline.images import load_rgb, save_png
from pipeline.labelmaps import CLASS_NAMES, colorize, read_label
from pipeline.layout import REAL_ROW

log = logging.getLogger("pipeline.table")

def _spread(metric: str) -> tuple[str, ...]:
    """A metric's columns: the mean over runs, their sd, the 95% interval."""
    return metric, f"{metric}_sd", f"{metric}_low", f"{metric}_high"


METRIC_COLUMNS = (
    *_spread("pixel_accuracy"),
    *_spread("mIoU"),
    *_spread("pixel_accuracy_parse"),
    *_spread("mIoU_parse"),
    *_spread("FID"),
    "FID_unstable",
    *_spread("KID"),
    "KID_std",
)
DESCRIPTION = ("n_test", "resolution", "iterations", "train_hours", "health", "vae_z", "protocol")
# table.csv: a row per model over its runs.
COLUMNS = ("model", "settings", "replicates", "interval_over", *METRIC_COLUMNS, *DESCRIPTION)
# table_runs.csv: a line per run, each metric as evaluate computed it (intervals over test images).
RUN_COLUMNS = ("model", "run", "replicate", "seed", "settings", "pixel_accuracy", "pixel_accuracy_low",
               "pixel_accuracy_high", "mIoU", "mIoU_low", "mIoU_high", "pixel_accuracy_parse",
               "pixel_accuracy_parse_low", "pixel_accuracy_parse_high", "mIoU_parse", "mIoU_parse_low",
               "mIoU_parse_high", "FID", "FID_unstable", "KID", "KID_std", *DESCRIPTION)  # fmt: skip
PAIRWISE_COLUMNS = ("a", "b", "metric", "difference", "low", "high", "holds", "interval_over")

# table.md's names of the published metrics.
METRIC_NAMES = {"pixel_accuracy": "pixel accuracy (%)", "mIoU": "mIoU (%)", "FID": "FID", "KID": "KID ×100"}

# How the method column names where a VAE row's z came from (metrics.vae_z).
VAE_Z = {"prior": "z from the prior", "encode": "z encoded from the real test photo"}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# How table.md prints a metric (and a difference in it): scale, digits. Accuracy and mIoU in
# percent, KID x100.
PRINTED = {"pixel_accuracy": (100, 1), "mIoU": (100, 1), "FID": (1, 1), "KID": (100, 2)}


def _cell_of(row: dict, key: str) -> str:
    """A metric's cell: mean, ± its sd over runs (two or more), [its 95% interval] where there
    is one."""
    scale, digits = PRINTED[key.removesuffix("_parse")]
    if row.get(key) is None:
        return "—"
    text = f"{scale * row[key]:.{digits}f}"
    if row.get(f"{key}_sd") is not None:
        text += f" ± {scale * row[key + '_sd']:.{digits}f}"
    if row.get(f"{key}_low") is not None:
        text += f" [{scale * row[key + '_low']:.{digits}f}, {scale * row[key + '_high']:.{digits}f}]"
    return text


def markdown(rows: list[dict], protocol_lines: list[str]) -> str:
    """The protocol, then accuracy and mIoU in percent, FID and KID, each the mean over the row's
    training runs (`runs`), ± their sd and with a 95% interval: higher accuracy and mIoU are
    better, lower FID and KID are better, as in the SPADE paper's Table 1. Where the label maps
    are the dataset's masks, accuracy and mIoU against the parse of the real photo follow in
    columns of their own."""
    against_parse = any(row.get("mIoU_parse") is not None for row in rows)
    extra = " accuracy vs parse (%) ↑ | mIoU vs parse (%) ↑ |" if against_parse else ""
    lines = [
        "### Protocol",
        "",
        *protocol_lines,
        "",
        f"| Method | settings | runs | pixel accuracy (%) ↑ | mIoU (%) ↑ |{extra} FID ↓ | KID ×100 ↓ | test images | "
        "resolution | iterations |",
        "| --- | --- | --- | --- | --- |" + " --- | --- |" * against_parse + " --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [_cell_of(row, "pixel_accuracy"), _cell_of(row, "mIoU")]
        if against_parse:
            cells += [_cell_of(row, "pixel_accuracy_parse"), _cell_of(row, "mIoU_parse")]
        fid = _cell_of(row, "FID") + ("*" if row["FID_unstable"] else "")
        kid = _cell_of(row, "KID")
        if row["KID_std"] is not None:  # one run: KID's std over subsets
            kid += f" ± {100 * row['KID_std']:.2f}"
        iterations = "" if row["iterations"] is None else str(row["iterations"])
        estimated = row["interval_over"] == replicates.OVER_RUNS_AND_IMAGES or row["model"] == REAL_ROW
        runs = str(row["replicates"]) + ("" if estimated else "†")
        method = row["model"] + (f" ({VAE_Z[row['vae_z']]})" if row["vae_z"] else "") + (" ⚠" if row["health"] else "")
        lines.append(
            f"| {method} | {row['settings']} | {runs} | {' | '.join(cells)} | {fid} | {kid} | {row['n_test']} | "
            f"{row['resolution']} | {iterations} |"
        )
    return "\n".join([*lines, "", *_notes(rows, against_parse)]) + "\n"


def _notes(rows: list[dict], against_parse: bool) -> list[str]:
    """What table.md says under the table: how rows and intervals are made, and what marks mean."""
    lines = []
    lines.append(
        "Each model's row is the mean over its independent training runs (`runs`; results/table_runs.csv has "
        "each run), ± their sd, and a 95% interval from a hierarchical bootstrap: the runs resampled, then "
        "the test images (accuracy, mIoU); FID and KID are resampled over runs only. `real`: the real test "
        "images re-segmented at the working resolution (the upper bound for accuracy and mIoU: how well the "
        "segmenter agrees with the input label maps on real photos) and FID/KID of the other real images "
        "against the reference set; its intervals are over test images."
    )
    if any(row["model"] != REAL_ROW and row["interval_over"] == replicates.OVER_IMAGES for row in rows):
        lines.append(
            f"†: fewer than {replicates.MIN_RUNS} runs, so the spread between training runs is not estimated: "
            "accuracy and mIoU intervals cover the test images only, FID and KID have none. A GAN trained "
            "again moves its scores by more than the test images do (docs/citing.md): set "
            f"training.replicates to {replicates.MIN_RUNS} or more to know which differences hold."
        )
    if against_parse:
        lines.append(
            "Accuracy and mIoU score the re-segmented faces against the input label maps (the dataset's "
            "hand-drawn masks); \"vs parse\" scores them against the segmenter's parse of the real test "
            "photo instead (how FFHQ rows are scored), so that part of the gap to the masks is the segmenter's."
        )
    if any(row["vae_z"] == "encode" for row in rows):
        lines.append(
            "VAE rows with z encoded from the real test photo (NVlabs' test protocol) borrow that photo's "
            "appearance: they are not comparable with rows that see only the label map."
        )
    lines.append(
        "Settings: the generator, then what differs from its defaults in config.yaml (resolution and "
        "iterations have their own columns)."
    )
    for row in rows:
        if row["health"]:
            lines.append(f"⚠ {row['model']}: training ended with signs of failure: {describe(row['health'])}.")
    if any(row["KID_std"] is not None for row in rows):
        lines.append("KID of one run: ± its std over random subsets of metrics.kid_subset_size images.")
    if any(row["replicates"] == 1 and row["KID_std"] is None for row in rows):
        lines.append(
            "KID of one run has no ± where neither image set is larger than metrics.kid_subset_size, "
            "since every subset is then the whole set."
        )
    if any(row["FID_unstable"] for row in rows):
        lines.append(
            "*: fewer images than Inception features (the protocol above says how many): the covariance is "
            "singular and FID is unreliable; prefer KID."
        )
    return lines


def pairwise_section(differences: list[replicates.Difference]) -> str:
    """Each pair of models' differences (a − b) with their 95% intervals, ✓ where the interval
    excludes 0."""
    if not differences:
        return ""
    pairs = list(dict.fromkeys((d.a, d.b) for d in differences))
    by_pair = {(d.a, d.b, d.metric): d for d in differences}
    lines = [
        "", "### Which differences hold", "",
        "Row a minus row b, mean over runs, with its 95% interval from the same resampling as the rows' "
        "(paired over test images); ✓ where the interval excludes 0. FID and KID differences have an "
        f"interval only where both rows have {replicates.MIN_RUNS} or more runs. Where a row has fewer (†), "
        "the interval covers the test images only: a ✓ there says that the test set does not explain the "
        "difference, not that another training run would keep it. Each interval is at 95%, not adjusted "
        "for the number of pairs and metrics compared.", "",
        f"| a − b | {' | '.join(METRIC_NAMES[m].replace('(%)', '(points)') for m in replicates.COMPARED)} |",
        "| --- |" + " --- |" * len(replicates.COMPARED),
    ]  # fmt: skip
    for a, b in pairs:
        cells = []
        for metric in replicates.COMPARED:
            d = by_pair.get((a, b, metric))
            if d is None:
                cells.append("—")
                continue
            scale, digits = PRINTED[metric]
            text = f"{scale * d.difference:+.{digits}f}"
            if d.low is not None:
                text += f" [{scale * d.low:+.{digits}f}, {scale * d.high:+.{digits}f}]" + (" ✓" if d.holds else "")
            cells.append(text)
        lines.append(f"| {a} − {b} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _figure(value: float, metric: str) -> str:
    """A figure as the paper printed it: accuracy and mIoU in percent, KID x100."""
    return f"{100 * value:.4g}" if metric in ("pixel_accuracy", "mIoU", "KID") else f"{value:g}"


def _measured(value: float, metric: str) -> str:
    """Our figure as the table above prints it."""
    return {"FID": f"{value:.1f}", "KID": f"{100 * value:.2f}"}.get(metric, f"{100 * value:.1f}")


def published_section(published: dict[str, list[dict]], rows: list[dict], run: protocol.Protocol) -> str:
    """What papers report for the compared models. A figure stands beside our row only where its
    metric's protocol matches the row's (pipeline.protocol); every other figure is listed apart, as
    context, with the protocol fields it differs in. `published`: model -> its config entries
    (models.*.published); `run`: this run's protocol."""
    values = {row["model"]: row for row in rows}
    beside, apart = [], []
    for model, entries in published.items():
        ours = run.row(values[model]["resolution"], values[model]["n_test"])
        for entry in entries:
            metrics = [metric for metric in METRIC_NAMES if metric in entry]
            other = {m: protocol.differences(entry, ours, m) for m in metrics}
            for metric in metrics:
                if not other[metric]:
                    here = _measured(values[model][metric], metric)
                    beside.append(f"| {model} | {entry['paper']} | {METRIC_NAMES[metric]} | "
                                  f"{_figure(entry[metric], metric)} | {here} |")
            shown = [m for m in metrics if other[m]]
            if shown:
                differs = list(dict.fromkeys(d for m in shown for d in other[m]))
                cells = " | ".join(_figure(entry[m], m) if m in shown else "" for m in METRIC_NAMES)
                apart.append(f"| {model} | {entry['paper']} | {entry['dataset']} | {cells} | "
                             f"{'; '.join(differs)} | {entry.get('note', '')} |")
    lines = []
    if beside:
        lines += [
            "", "### Published figures under this protocol", "",
            "Figures a paper reports under the protocol above, metric by metric (docs/citing.md says which).", "",
            "| Method | paper | metric | published | here |", "| --- | --- | --- | --- | --- |", *beside,
        ]  # fmt: skip
    if apart:
        lines += [
            "", "### Published figures under another protocol (context, not targets)", "",
            "Measured on other data, splits, resolutions, reference sets or segmenters: not comparable "
            "number for number with the rows above.", "",
            f"| Method | paper | measured on | {' | '.join(METRIC_NAMES.values())} | differs in | note |",
            "| --- | --- | --- |" + " --- |" * len(METRIC_NAMES) + " --- | --- |", *apart,
        ]  # fmt: skip
    return "\n".join(lines) + "\n" if lines else ""


def per_class_chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 4.5))
    width = 0.8 / len(rows)
    x = np.arange(len(CLASS_NAMES))
    for index, row in enumerate(rows):
        values = [row["per_class_iou"][name] for name in CLASS_NAMES]
        ax.bar(x + index * width, [np.nan if v is None else v for v in values], width, label=row["model"])
    ax.set_xticks(x + 0.4 - width / 2, CLASS_NAMES, rotation=45, ha="right")
    ax.set_ylabel("IoU")
    ax.set_ylim(0, 1)
    ax.legend(ncol=min(len(rows), 4), fontsize="small")
    ax.set_title("Per-class IoU of re-segmented faces against their input label maps")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def spread_points(rows: list[replicates.Row], summaries: list[dict]) -> dict[str, list[tuple]]:
    """What the runs' figure draws, per metric: (row, each run's value, the mean, the interval's
    low and high or None) in table order."""
    return {
        metric: [(row.model, [run[metric] for run in row.runs], summary[metric], summary.get(f"{metric}_low"),
                  summary.get(f"{metric}_high")) for row, summary in zip(rows, summaries)]
        for metric in replicates.COMPARED
    }  # fmt: skip


def spread_chart(points: dict[str, list[tuple]], path: Path) -> None:
    """One panel per metric: a dot per training run, each row's mean and 95% interval beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 4))
    for ax, (metric, entries) in zip(axes, points.items()):
        for x, (_, values, mean, low, high) in enumerate(entries):
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(x - 0.15 + np.asarray(jitter), values, s=14, color="tab:blue", alpha=0.7)
            if low is None:
                ax.plot([x + 0.15], [mean], "k_", markersize=12)
            else:
                ax.errorbar([x + 0.15], [mean], yerr=[[mean - low], [high - mean]], fmt="ko", markersize=4, capsize=3)
        ax.set_xticks(range(len(entries)), [entry[0] for entry in entries], rotation=45, ha="right")
        # Each value as computed (fractions), so the name without its scale.
        name = METRIC_NAMES[metric].replace(" (%)", "").replace(" ×100", "")
        ax.set_title(name + (" ↑" if metric in replicates.SEGMENTATION else " ↓"))
    fig.suptitle("Each training run (dots) and each row's mean with its 95% interval")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def samples_grid(truth_dir: Path, real_dir: Path, model_dirs: dict[str, Path], path: Path, count: int = 6) -> None:
    """Rows: test images; columns: label map, real image, each model's synthesis."""
    ids = [p.stem for p in sorted(truth_dir.glob("*.png"))[:count]]
    tile = 128
    rows = []
    for image_id in ids:
        tiles = [
            colorize(read_label(truth_dir / f"{image_id}.png")),
            np.asarray(load_rgb(real_dir / f"{image_id}.png")),
        ]
        tiles += [np.asarray(load_rgb(folder / f"{image_id}.png")) for folder in model_dirs.values()]
        rows.append(
            np.concatenate(
                [np.asarray(Image.fromarray(t).resize((tile, tile), Image.Resampling.NEAREST)) for t in tiles], axis=1
            )
        )
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    header = Image.new("RGB", (grid.width, 16), "white")
    draw = ImageDraw.Draw(header)
    for index, name in enumerate(["label map", "real", *model_dirs]):
        draw.text((index * tile + 4, 2), name, fill="black")
    canvas = Image.new("RGB", (grid.width, grid.height + 16), "white")
    canvas.paste(header, (0, 0))
    canvas.paste(grid, (0, 16))
    save_png(canvas, path)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--metrics", type=Path, nargs="+", required=True,
                        help="per-run JSON files, in table order (a model's runs together, `real` last)")
    parser.add_argument("--confusions", type=Path, nargs="+", required=True,
                        help="the runs' per-image confusion matrices (.npz), in the same order")
    parser.add_argument("--table", type=Path, required=True, help="table.csv to write (table.md beside it)")
    parser.add_argument("--runs", type=Path, required=True, help="the long table to write, a line per run")
    parser.add_argument("--pairwise", type=Path, required=True, help="the pairwise differences to write")
    parser.add_argument("--spread", type=Path, required=True, help="the runs' figure to write")
    parser.add_argument("--per-class", type=Path, required=True)
    parser.add_argument("--chart", type=Path, required=True)
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True, help="ground-truth label maps of the test images")
    parser.add_argument("--real", type=Path, required=True, help="real test images at the working resolution")
    parser.add_argument("--synth", type=Path, nargs="+", required=True, help="each model's synthesis folder")
    parser.add_argument(
        "--published-json", default="{}", help="model -> figures papers report for it (config models.*.published)"
    )
    parser.add_argument("--data-json", required=True, help="the validated `data` config section as JSON")
    parser.add_argument("--split", type=Path, required=True, help="split CSV of the data stage")
    parser.add_argument("--parser-weights", type=Path, required=True, help="the segmenter's weights")
    parser.add_argument("--parsing-size", type=int, required=True, help="parsing.size")
    parser.add_argument("--fid-reference", choices=("test", "train"), required=True, help="metrics.fid_reference")
    parser.add_argument("--fid-dims", type=int, required=True, help="metrics.fid_dims")
    parser.add_argument("--bootstrap", type=int, required=True, help="metrics.bootstrap: resamples per interval")
    args = parser.parse_args()
    if len(args.metrics) != len(args.confusions):
        parser.error("give one --confusions file per --metrics file")
    return args


def main() -> None:
    args = arguments()
    run = protocol.measured(DataConfig.from_dict(json.loads(args.data_json)), args.split, args.parser_weights,
                            args.parsing_size, args.fid_reference, args.fid_dims)
    runs = [json.loads(path.read_text()) for path in args.metrics]
    for row in runs:
        row["protocol"] = protocol.summary(run, row["resolution"], row["n_test"])
    confusions = []
    for path in args.confusions:
        with np.load(path) as arrays:
            confusions.append(dict(arrays))
    rows = replicates.group_runs(runs, confusions, list(map(str, args.confusions)))
    draws = replicates.resample(rows, args.bootstrap)
    summaries = [replicates.summarize(row, row_draws) for row, row_draws in zip(rows, draws)]
    # The models' differences; the real row is a bound, not a competitor.
    differences = replicates.pairwise(rows[:-1], summaries[:-1], draws[:-1])

    write_csv(args.table, list(COLUMNS), [[_cell(row.get(c)) for c in COLUMNS] for row in summaries])
    write_csv(args.runs, list(RUN_COLUMNS), [
        [_cell(value) for value in (row.model, r["model"], *(r.get(c) for c in RUN_COLUMNS[2:]))]
        for row in rows for r in row.runs])  # fmt: skip
    write_csv(args.pairwise, list(PAIRWISE_COLUMNS), [
        [_cell(getattr(d, column)) for column in PAIRWISE_COLUMNS] for d in differences])
    real = summaries[-1]
    with atomic_path(args.table.with_suffix(".md")) as tmp:
        tmp.write_text(
            markdown(summaries, protocol.describe(run, real["resolution"], real["n_test"]))
            + pairwise_section(differences)
            + published_section(json.loads(args.published_json), summaries, run)
        )
    write_csv(
        args.per_class,
        ["model", *CLASS_NAMES],
        [[row["model"], *(_cell(row["per_class_iou"][c]) for c in CLASS_NAMES)] for row in summaries],
    )
    spread_chart(spread_points(rows, summaries), args.spread)
    per_class_chart(summaries, args.chart)
    samples_grid(args.truth, args.real, {folder.name: folder for folder in args.synth}, args.samples)
    log.info("wrote %s with %d rows from %d runs", args.table, len(rows), len(runs))


if __name__ == "__main__":
    cli.run(main)
