"""`python -m pipeline.table`: the comparison tables and figures from the per-row metrics.

results/table.csv (one row per model, then `real`), results/table.md (in the style of the
SPADE paper's Table 1, then what the papers report for the same models, as context),
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

from pipeline import cli
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
)

# How the method column names where a VAE row's z came from (metrics.vae_z).
VAE_Z = {"prior": "z from the prior", "encode": "z encoded from the real test photo"}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    """Accuracy and mIoU in percent with their 95% intervals, FID and KID: higher accuracy and
    mIoU are better, lower FID and KID are better, as in the SPADE paper's Table 1."""
    lines = [
        "| Method | settings | pixel accuracy (%) ↑ | mIoU (%) ↑ | FID ↓ | KID ×100 ↓ | test images | resolution | iterations |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        accuracy = (
            f"{100 * row['pixel_accuracy']:.1f} [{100 * row['pixel_accuracy_low']:.1f}, "
            f"{100 * row['pixel_accuracy_high']:.1f}]"
        )
        miou = f"{100 * row['mIoU']:.1f} [{100 * row['mIoU_low']:.1f}, {100 * row['mIoU_high']:.1f}]"
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
        "working resolution (the upper bound for accuracy and mIoU) and FID/KID of real train against "
        "real test images."
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


def published_section(published: dict[str, list[dict]]) -> str:
    """The figures papers report for the compared models, under their own heading: measured on
    other data (ADE20K, other face sets) or with other parsers, so context for reading our rows,
    never a target they should reach. `published`: model -> its config entries (models.*.published)."""
    entries = [(model, entry) for model, figures in published.items() for entry in figures]
    if not entries:
        return ""

    def percent(entry: dict, key: str) -> str:
        return f"{100 * entry[key]:.4g}" if key in entry else ""  # the digits the paper printed

    lines = [
        "",
        "### Published figures (context, not targets)",
        "",
        "What the papers this project is built from report for each model, on their own data and parsers; "
        "the rows above are measured here, on this run's test set, and are not comparable number for number.",
        "",
        "| Method | paper | measured on | pixel accuracy (%) | mIoU (%) | FID | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, entry in entries:
        fid = f"{entry['FID']:g}" if "FID" in entry else ""
        lines.append(
            f"| {model} | {entry['paper']} | {entry['dataset']} | {percent(entry, 'pixel_accuracy')} | "
            f"{percent(entry, 'mIoU')} | {fid} | {entry.get('note', '')} |"
        )
    return "\n".join(lines) + "\n"


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
    args = parser.parse_args()

    rows = [json.loads(path.read_text()) for path in args.metrics]
    write_csv(args.table, list(COLUMNS), [[_cell(row[c]) for c in COLUMNS] for row in rows])
    with atomic_path(args.table.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(rows) + published_section(json.loads(args.published_json)))
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
