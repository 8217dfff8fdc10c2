"""`python -m pipeline.evaluate`: the real side of the evaluation and one metrics row.

  real   real test images and their ground-truth label maps at a working resolution (resized
         as for training), plus as many real train images, the FID reference of the `real` row
  stats  Inception statistics of a folder (the real test set's are computed once and cached)
  row    pixel accuracy, mIoU (95% bootstrap intervals), per-class IoU, FID and KID of a row (a
         model's run, or the real images), and its per-image confusion matrices

Ground truth for every row is the label map fed to the generator, resized by nearest neighbour
to the working resolution: the parse of the original image, or CelebAMask-HQ's hand-drawn masks.
With the masks, a model's row is also scored against the parse of the real test photo (the real
row's re-segmentation), the FFHQ definition, under names of its own (`..._parse`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from pipeline import cli
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.fid import (
    Statistics,
    features,
    frechet_distance,
    image_files,
    inception,
    kernel_inception_distance,
    warn_if_unstable,
)
from pipeline.files import atomic_path
from pipeline.images import save_png
from pipeline.labelmaps import CLASS_NAMES, read_label, write_label
from pipeline.metrics import bootstrap_intervals, confusion_matrix, mean_iou, per_class_iou, pixel_accuracy
from pipeline.models.trained import load_settings
from pipeline.pairs import resize_labels, working_image, working_labels
from pipeline.parse.manifest import read_manifests
from pipeline.progress import progress
from pipeline.training_log import read_rows

log = logging.getLogger("pipeline.evaluate")


def write_real(manifests: list[Path], resolution: int, out_dir: Path) -> None:
    """out_dir/test/{id}.png and out_dir/truth/{id}.png for every test image, and
    out_dir/train/{id}.png for as many train images (the first in split order)."""
    rows = read_manifests(manifests)
    test = [row for row in rows if row["split"] == "test"]
    train = [row for row in rows if row["split"] == "train"][: len(test)]
    if not test:
        raise PipelineError(f"no test images in {', '.join(map(str, manifests))}")
    if len(train) < len(test):
        log.warning("only %d train images for the real row's FID against %d test images", len(train), len(test))
    for row in progress(test, desc="real test", unit="img"):
        save_png(working_image(row["path"], resolution), out_dir / "test" / f"{row['image_id']}.png")
        write_label(
            working_labels(row["label"], resolution),
            out_dir / "truth" / f"{row['image_id']}.png",
            provenance=f"{row['label']} nearest {resolution}",
        )
    for row in progress(train, desc="real train", unit="img"):
        save_png(working_image(row["path"], resolution), out_dir / "train" / f"{row['image_id']}.png")


def inception_statistics(folder: Path, metrics_cfg: dict, device: torch.device) -> Statistics:
    """The Inception statistics of a folder's images, with the `metrics` section's weights,
    features (fid_dims) and batch size."""
    model = inception(metrics_cfg["inception_weights"], device, metrics_cfg["fid_dims"])
    return Statistics.of(features(image_files(folder), model, device, metrics_cfg["batch_size"]))


def label_files(folders: list[Path]) -> dict[str, Path]:
    """The label maps of one or more folders (e.g. a row's shards), by file name."""
    return {path.name: path for folder in folders for path in folder.glob("*.png")}


def segmentation_scores(
    truths: dict[str, Path], predictions: dict[str, Path], where: str, bootstrap: int, resize: bool = False
) -> dict:
    """Pixel accuracy and mIoU with 95% bootstrap intervals of the predictions against the truths
    (matched by file name, in name order), and the per-image confusion matrices (`confusions`,
    N x K x K: what the table resamples over images and replicates). With `resize`, a truth at another
    size is resized to the prediction's by nearest neighbour (the real photos' parses, made at
    the shared resolution, for a model of another one)."""
    per_image = []
    for name, truth in sorted(truths.items()):
        if name not in predictions:
            raise PipelineError(f"{where}: no re-segmentation of test image {Path(name).stem}")
        predicted = read_label(predictions[name])
        expected = read_label(truth)
        if resize and expected.shape != predicted.shape:
            expected = resize_labels(expected, predicted.shape[0])
        per_image.append(confusion_matrix(expected, predicted))
    per_image = np.stack(per_image)
    total = per_image.sum(axis=0)
    accuracy_ci, miou_ci = bootstrap_intervals(per_image, resamples=bootstrap)
    return {
        "pixel_accuracy": pixel_accuracy(total),
        "pixel_accuracy_low": accuracy_ci.low,
        "pixel_accuracy_high": accuracy_ci.high,
        "mIoU": mean_iou(total),
        "mIoU_low": miou_ci.low,
        "mIoU_high": miou_ci.high,
        "confusions": per_image,
    }


# The scores against the parse of the real photo, by the name of the score they stand beside.
PARSE_SCORES = {f"{metric}{bound}": f"{metric}_parse{bound}" for metric in ("pixel_accuracy", "mIoU")
                for bound in ("", "_low", "_high")}  # fmt: skip


def evaluate_row(
    name: str,
    truth_dir: Path,
    prediction_dirs: list[Path],
    images_dir: Path,
    real_stats: Statistics,
    metrics_cfg: dict,
    device: torch.device,
    parse_truth_dirs: list[Path] | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of one table row: re-segmentations (found by file name in any of the shard
    folders) against ground truth (and against `parse_truth_dirs`, the parses of the real test
    photos, when given), images against the FID reference set's Inception statistics. Returns
    the metrics and the per-image confusion matrices they come from: `confusions` (and
    `confusions_parse`) with the test images' `image_ids`, in the same order."""
    truths = label_files([truth_dir])
    if not truths:
        raise PipelineError(f"{truth_dir}: no ground-truth label maps")
    predictions = label_files(prediction_dirs)
    folders = ", ".join(map(str, prediction_dirs))
    scores = segmentation_scores(truths, predictions, folders, metrics_cfg["bootstrap"])
    confusions = {"image_ids": np.array([Path(name).stem for name in sorted(truths)]),
                  "confusions": scores.pop("confusions")}
    against_parse = dict.fromkeys(PARSE_SCORES.values())
    if parse_truth_dirs:
        parses = {name_: path for name_, path in label_files(parse_truth_dirs).items() if name_ in truths}
        if len(parses) != len(truths):
            missing = sorted(set(truths) - set(parses))[0]
            raise PipelineError(f"{parse_truth_dirs[0].parent}: no parse of real test image {Path(missing).stem}")
        parse_scores = segmentation_scores(parses, predictions, folders, metrics_cfg["bootstrap"], resize=True)
        confusions["confusions_parse"] = parse_scores.pop("confusions")
        against_parse = {name_: parse_scores[key] for key, name_ in PARSE_SCORES.items()}

    own = inception_statistics(images_dir, metrics_cfg, device)
    kid, kid_std = kernel_inception_distance(
        own.features, real_stats.features, metrics_cfg["kid_subsets"], metrics_cfg["kid_subset_size"]
    )
    ious = per_class_iou(confusions["confusions"].sum(axis=0))
    return {
        "model": name,
        **scores,
        **against_parse,
        "FID": frechet_distance(own, real_stats),
        "FID_unstable": warn_if_unstable(name, min(len(own.features), len(real_stats.features)), own.dims),
        "fid_dims": own.dims,
        "KID": kid,
        "KID_std": kid_std,
        "n_test": len(truths),
        "per_class_iou": {cls: (None if np.isnan(v) else float(v)) for cls, v in zip(CLASS_NAMES, ious)},
    }, confusions


def training_summary(weights: Path, train_log: Path, vae_z: str) -> dict:
    """How the row's model was made: its generator and the settings in which it differs from
    that generator's defaults (ModelConfig.distinguishing_settings), which replicate of the model
    it is and with which seed it trained, resolution, iterations,
    training hours (the sum of the logged step times), the signs of a failed run at its last
    step (pipeline.health) and, for VAE models, where synthesis took z from (metrics.vae_z)."""
    model = load_settings(weights)
    rows = read_rows(train_log)
    seconds = sum(model.training.batch_size / float(row["img_per_s"]) for row in rows)
    changed = model.distinguishing_settings()
    return {
        "settings": ", ".join([model.generator, *(f"{k}={_setting(v)}" for k, v in changed.items())]),
        "replicate": model.training.replicate,
        "seed": model.training.run_seed,
        "resolution": model.training.resolution,
        "iterations": model.training.iterations,
        "train_hours": seconds / 3600,
        "health": rows[-1]["health"] if rows else "",
        "vae_z": vae_z if model.vae else None,
    }


def _setting(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):  # switch_stats: instance+layer
        return "+".join(value)
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    real = commands.add_parser("real", help="real images and ground truth at a working resolution")
    real.add_argument("--manifests", type=Path, nargs="+", required=True)
    real.add_argument("--resolution", type=int, required=True)
    real.add_argument("--out-dir", type=Path, required=True)
    stats = commands.add_parser("stats", help="Inception statistics of a folder of images")
    stats.add_argument("--images", type=Path, required=True)
    stats.add_argument("--out", type=Path, required=True)
    row = commands.add_parser("row", help="metrics of one table row as JSON")
    row.add_argument("--name", required=True)
    row.add_argument("--truth", type=Path, required=True, help="ground-truth label maps")
    row.add_argument(
        "--predictions", type=Path, nargs="+", required=True, help="folders of re-segmentations, same file names"
    )
    row.add_argument("--images", type=Path, required=True, help="the row's images for FID/KID")
    row.add_argument("--real-stats", type=Path, required=True, help="statistics of the FID reference images")
    row.add_argument(
        "--parse-truth", type=Path, nargs="+", help="folders of the real test photos' parses, a second truth"
    )
    row.add_argument("--weights", type=Path, help="the model's generator.pt (none for the real row)")
    row.add_argument("--train-log", type=Path)
    row.add_argument("--resolution", type=int, help="the real row's working resolution")
    row.add_argument("--out", type=Path, required=True)
    row.add_argument(
        "--confusions", type=Path, required=True, help="the per-image confusion matrices to write (.npz)"
    )
    for command in (stats, row):
        command.add_argument(
            "--metrics-json", required=True, help="the validated `metrics` config section (stats: its Inception keys)"
        )
    args = parser.parse_args()
    if args.command == "row" and not ((args.weights and args.train_log) or args.resolution):
        parser.error("row: give --weights and --train-log (a model's row) or --resolution (the real row)")

    if args.command == "real":
        write_real(args.manifests, args.resolution, args.out_dir)
        return
    metrics_cfg = json.loads(args.metrics_json)
    device = resolve_device(metrics_cfg["device"], "config key metrics.device")
    if args.command == "stats":
        inception_statistics(args.images, metrics_cfg, device).save(args.out)
        return
    write_row(args, metrics_cfg, device)


def write_row(args: argparse.Namespace, metrics_cfg: dict, device: torch.device) -> None:
    """`evaluate row`: the row's metrics (--out) and per-image confusion matrices (--confusions)."""
    real_stats = Statistics.load(args.real_stats)
    if real_stats.dims != metrics_cfg["fid_dims"]:
        raise PipelineError(f"{args.real_stats}: {real_stats.dims} Inception features, metrics.fid_dims is "
                            f"{metrics_cfg['fid_dims']}: delete it to compute it again")
    result, confusions = evaluate_row(
        args.name, args.truth, args.predictions, args.images, real_stats, metrics_cfg, device, args.parse_truth
    )
    if args.weights:
        result.update(training_summary(args.weights, args.train_log, metrics_cfg["vae_z"]))
    else:  # the real row: nothing was trained
        result.update(settings="", replicate=0, seed=None, resolution=args.resolution, iterations=None,
                      train_hours=None, health="", vae_z=None)
    with atomic_path(args.confusions) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **confusions)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    log.info(
        "%s: accuracy %.4f, mIoU %.4f, FID %.2f, KID %.4f",
        args.name,
        result["pixel_accuracy"],
        result["mIoU"],
        result["FID"],
        result["KID"],
    )


if __name__ == "__main__":
    cli.run(main)
