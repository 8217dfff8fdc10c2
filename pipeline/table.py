"""`python -m pipeline.table`: the comparison tables and figures from the per-row metrics.

results/table.csv (one row per model, then `real`, each with its protocol), results/table.md
(the protocol, then the table in the style of the SPADE paper's Table 1, then what papers report
for the same models: beside our rows only where a metric's protocol matches, else apart),
results/per_class_iou.csv, and the figures: a per-class IoU chart and
a grid of test images (label map | real | each model).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline import cli, protocol
from pipeline.config import DataConfig
from pipeline.files import atomic_path, write_csv
from pipeline.health import describe
from pipeline.images import load_rgb, save_png
from pipeline.labelmaps import CLASS_NAMES, colorize, read_label

log = logging.getLogger("pipeline.table")

COLUMNS = (
    "model",
    "settings",
    "pixel_accuracy",
    "pixel_accuracy_low",
    "pixel_accuracy_high",
    "mIoU",
    "mIoU_low",
    "mIoU_high",
    "pixel_accuracy_parse",
    "pixel_accuracy_parse_low",
    "pixel_accuracy_parse_high",
    "mIoU_parse",
    "mIoU_parse_low",
    "mIoU_parse_high",
    "FID",
    "FID_unstable",
    "KID",
    "KID_std",
    "n_test",
    "resolution",
    "iterations",
    "train_hours",
    "health",
    "vae_z",
    "protocol",
)

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


def _interval(row: dict, key: str) -> str:
    if row.get(key) is None:
        return "—"
    return f"{100 * row[key]:.1f} [{100 * row[key + '_low']:.1f}, {100 * row[key + '_high']:.1f}]"


def markdown(rows: list[dict], protocol_lines: list[str]) -> str:
    """The protocol, then accuracy and mIoU in percent with their 95% intervals, FID and KID:
    higher accuracy and mIoU are better, lower FID and KID are better, as in the SPADE paper's
    Table 1. Where the label maps are the dataset's masks, accuracy and mIoU against the parse of
    the real photo follow in columns of their own."""
    against_parse = any(row.get("mIoU_parse") is not None for row in rows)
    extra = " accuracy vs parse (%) ↑ | mIoU vs parse (%) ↑ |" if against_parse else ""
    lines = [
        "### Protocol",
        "",
        *protocol_lines,
        "",
        f"| Method | settings | pixel accuracy (%) ↑ | mIoU (%) ↑ |{extra} FID ↓ | KID ×100 ↓ | test images | "
        "resolution | iterations |",
        "| --- | --- | --- | --- |" + " --- | --- |" * against_parse + " --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        accuracy = _interval(row, "pixel_accuracy")
        miou = _interval(row, "mIoU")
        if against_parse:
            miou += f" | {_interval(row, 'pixel_accuracy_parse')} | {_interval(row, 'mIoU_parse')}"
        fid = f"{row['FID']:.1f}" + ("*" if row["FID_unstable"] else "")
        kid = f"{100 * row['KID']:.2f}" + ("" if row["KID_std"] is None else f" ± {100 * row['KID_std']:.2f}")
        iterations = "" if row["iterations"] is None else str(row["iterations"])
        method = row["model"] + (f" ({VAE_Z[row['vae_z']]})" if row["vae_z"] else "") + (" ⚠" if row["health"] else "")
        lines.append(
            f"| {method} | {row['settings']} | {accuracy} | {miou} | {fid} | {kid} | {row['n_test']} | "
            f"{row['resolution']} | {iterations} |"
        )
    lines.append("")
    lines.append(
        "Intervals: 95% bootstrap over test images. `real`: the real test images re-segmented at the "
        "working resolution (the upper bound for accuracy and mIoU: how well the segmenter agrees with the "
        "input label maps on real photos) and FID/KID of the other real images against the reference set."
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
    if any(row["KID_std"] is None for row in rows):
        lines.append(
            "KID ± is its std over random subsets of metrics.kid_subset_size images; it is left out where "
            "neither image set is larger than that, since every subset is then the whole set."
        )
    if any(row["FID_unstable"] for row in rows):
        lines.append(
            "*: fewer images than Inception features (2048): the covariance is singular and FID is "
            "unreliable; prefer KID."
        )
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


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--metrics", type=Path, nargs="+", required=True, help="per-row JSON files, in table order")
    parser.add_argument("--table", type=Path, required=True, help="table.csv to write (table.md beside it)")
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
    args = parser.parse_args()

    run = protocol.measured(DataConfig.from_dict(json.loads(args.data_json)), args.split, args.parser_weights,
                            args.parsing_size, args.fid_reference)
    rows = [json.loads(path.read_text()) for path in args.metrics]
    for row in rows:
        row["protocol"] = protocol.summary(run, row["resolution"], row["n_test"])
    write_csv(args.table, list(COLUMNS), [[_cell(row.get(c)) for c in COLUMNS] for row in rows])
    real = rows[-1]
    with atomic_path(args.table.with_suffix(".md")) as tmp:
        tmp.write_text(
            markdown(rows, protocol.describe(run, real["resolution"], real["n_test"]))
            + published_section(json.loads(args.published_json), rows, run)
        )
    write_csv(
        args.per_class,
        ["model", *CLASS_NAMES],
        [[row["model"], *(_cell(row["per_class_iou"][c]) for c in CLASS_NAMES)] for row in rows],
    )
    per_class_chart(rows, args.chart)
    samples_grid(args.truth, args.real, {folder.name: folder for folder in args.synth}, args.samples)
    log.info("wrote %s with %d rows", args.table, len(rows))


if __name__ == "__main__":
    cli.run(main)
