"""A model's training runs (replicates): their names and seeds, and how the table combines them
into a row with its interval and tells which differences between rows hold (pipeline.replicates;
the resampling itself is tested in test_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import replicates
from pipeline.config import ConfigError, ModelConfig, replicate_names, resolve
from pipeline.errors import PipelineError
from pipeline.labelmaps import CLASS_NAMES, NUM_CLASSES
from pipeline.layout import parse_replicate, replicate_name
from pipeline.metrics import bootstrap_intervals
from pipeline.table import spread_points


def test_a_runs_name_says_its_model_and_replicate_and_replicate_0_is_the_models_own():
    assert replicate_name("spade", 0) == "spade" and replicate_name("spade", 2) == "spade#2"
    assert parse_replicate("spade") == ("spade", 0) and parse_replicate("spade#2") == ("spade", 2)
    config = resolve({"models": {"spade": {"generator": "spade", "training": {"replicates": 3}}}})
    assert replicate_names(config, "spade") == ["spade", "spade#1", "spade#2"]
    assert replicate_names(config, "pix2pixhd") == ["pix2pixhd"]


def test_growing_the_replicates_leaves_replicate_0_as_it_was():
    """Replicate 0's settings (what its jobs rerun on) and run key do not change with the number
    of replicates; each further run is a model of its own, with its own seed."""
    one = resolve({})
    three = resolve({"training": {"replicates": 3}})
    assert ModelConfig.from_config(three, "spade").to_json() == ModelConfig.from_config(one, "spade").to_json()
    assert ModelConfig.from_config(three, "spade").training.run_seed == one["training"]["seed"]
    runs = [ModelConfig.from_config(three, name) for name in replicate_names(three, "spade")]
    assert len({run.run_key() for run in runs}) == 3
    seeds = [run.training.run_seed for run in runs]
    assert len(set(seeds)) == 3 and all(0 <= seed < 2**31 for seed in seeds)
    # Derived from the config alone: the same config gives the same seeds, another seed others.
    assert ModelConfig.from_config(three, "spade#2").training.run_seed == seeds[2]
    other = resolve({"training": {"replicates": 3, "seed": 1}})
    assert ModelConfig.from_config(other, "spade#2").training.run_seed != seeds[2]
    # The run is told apart by its own column, not by its settings cell.
    assert runs[2].distinguishing_settings() == runs[0].distinguishing_settings() == {}


def test_a_model_name_with_the_replicate_mark_is_refused():
    with pytest.raises(ConfigError, match=r"config key models.spade#1: '#' marks a replicate's run"):
        resolve({"models": {"spade#1": {"generator": "spade"}}})
    with pytest.raises(ConfigError, match=r"spade#1: model spade has 1 run\(s\) \(training.replicates\)"):
        ModelConfig.from_config(resolve({}), "spade#1")
    with pytest.raises(ConfigError, match=r"spade#01: not a run's name; model spade's runs are spade, spade#1"):
        ModelConfig.from_config(resolve({"training": {"replicates": 3}}), "spade#01")


def run_metrics(name: str, accuracy: float, fid: float, health: str = "") -> dict:
    return {"model": name, "settings": "spade", "replicate": parse_replicate(name)[1], "seed": 0,
            "pixel_accuracy": accuracy, "mIoU": accuracy / 2, "FID": fid, "FID_unstable": False, "KID": fid / 1000,
            "KID_std": 0.001, "n_test": 30, "resolution": 64, "iterations": 10, "train_hours": 0.5, "health": health,
            "vae_z": None, "per_class_iou": {name: 0.5 for name in CLASS_NAMES}}  # fmt: skip


def confusions(correct: float, n_images: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-image confusion matrices with about `correct` of each image's pixels right."""
    rng = np.random.default_rng(seed)
    per_image = np.zeros((n_images, NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for index in range(n_images):
        right = rng.binomial(100, correct, size=3)
        per_image[index, [0, 1, 2], [0, 1, 2]] = right
        per_image[index, [0, 1, 2], [1, 2, 0]] = 100 - right
    return {"image_ids": np.array([f"{i:05d}" for i in range(n_images)]), "confusions": per_image}


def table(runs: list[tuple[str, float, float]], resamples: int = 200):
    metrics = [run_metrics(name, 0, fid) for name, _, fid in runs]
    arrays = [confusions(correct, seed=index) for index, (_, correct, _) in enumerate(runs)]
    for run, array in zip(metrics, arrays):
        per_image = array["confusions"].sum(axis=0)
        run["pixel_accuracy"] = float(np.trace(per_image) / per_image.sum())
        run["mIoU"] = run["pixel_accuracy"] / 2
    rows = replicates.group_runs(metrics, arrays, [f"{name}.npz" for name, _, _ in runs])
    draws = replicates.resample(rows, resamples)
    return rows, draws, [replicates.summarize(row, row_draws) for row, row_draws in zip(rows, draws)], arrays


def test_one_run_is_a_row_as_before_and_its_interval_covers_the_test_images_only():
    rows, draws, (summary,), arrays = table([("spade", 0.8, 50.0)])
    accuracy, _ = bootstrap_intervals(arrays[0]["confusions"], resamples=200)
    assert summary["replicates"] == 1 and summary["interval_over"] == "test images"
    assert (summary["pixel_accuracy_low"], summary["pixel_accuracy_high"]) == pytest.approx((accuracy.low,
                                                                                              accuracy.high))
    assert summary["pixel_accuracy_sd"] is None and summary["FID_low"] is None and summary["KID_std"] == 0.001


def test_runs_of_one_model_are_one_row_with_their_mean_sd_and_an_interval_over_runs_too():
    runs = [("spade", 0.70, 50.0), ("spade#1", 0.80, 60.0), ("spade#2", 0.90, 70.0), ("spade#3", 0.75, 55.0),
            ("real", 0.95, 10.0)]
    rows, draws, summaries, _ = table(runs)
    assert [row.model for row in rows] == ["spade", "real"] and len(rows[0].runs) == 4
    spade = summaries[0]
    values = [run["pixel_accuracy"] for run in rows[0].runs]
    assert spade["pixel_accuracy"] == pytest.approx(np.mean(values))
    assert spade["pixel_accuracy_sd"] == pytest.approx(np.std(values, ddof=1))
    assert spade["FID"] == pytest.approx(58.75) and spade["FID_sd"] == pytest.approx(np.std([50, 60, 70, 55], ddof=1))
    assert spade["interval_over"] == "runs and test images" and spade["KID_std"] is None
    assert spade["FID_low"] < 58.75 < spade["FID_high"]
    # The runs differ by far more than the images do: the interval spans most of the runs' range.
    one_run = bootstrap_intervals(rows[0].confusions["confusions"][0], resamples=200)[0]
    assert spade["pixel_accuracy_high"] - spade["pixel_accuracy_low"] > 3 * (one_run.high - one_run.low)
    assert spade["train_hours"] == pytest.approx(2.0)


def test_two_runs_show_their_sd_but_estimate_no_spread_between_runs():
    rows, draws, (spade, _), _ = table([("spade", 0.70, 50.0), ("spade#1", 0.90, 70.0), ("real", 0.95, 10.0)])
    assert spade["replicates"] == 2 and spade["interval_over"] == "test images"
    assert spade["pixel_accuracy_sd"] > 0 and spade["FID_sd"] == pytest.approx(np.std([50, 70], ddof=1))
    assert spade["FID_low"] is None and "FID" not in draws[0].over_runs


def test_runs_scored_on_other_test_images_are_refused_naming_the_file():
    metrics = [run_metrics("spade", 0.8, 50), run_metrics("real", 0.9, 10)]
    arrays = [confusions(0.8), confusions(0.9, n_images=29)]
    with pytest.raises(PipelineError, match=r"real.npz: scored on other test images than spade.npz"):
        replicates.group_runs(metrics, arrays, ["spade.npz", "real.npz"])


def test_pairwise_differences_hold_only_where_their_interval_excludes_0():
    runs = [("good", 0.90, 40.0), ("good#1", 0.91, 42.0), ("good#2", 0.89, 41.0),
            ("twin", 0.90, 40.5), ("twin#1", 0.91, 41.5), ("twin#2", 0.89, 41.0),
            ("bad", 0.60, 90.0), ("real", 0.95, 10.0)]  # fmt: skip
    rows, draws, summaries, _ = table(runs)
    differences = {(d.a, d.b, d.metric): d for d in replicates.pairwise(rows[:-1], summaries[:-1], draws[:-1])}
    assert set(differences) == {(a, b, m) for a, b in [("good", "twin"), ("good", "bad"), ("twin", "bad")]
                                for m in replicates.COMPARED}  # fmt: skip
    assert differences["good", "bad", "pixel_accuracy"].holds and differences["good", "bad", "pixel_accuracy"].low > 0
    assert not differences["good", "twin", "pixel_accuracy"].holds
    assert differences["good", "twin", "FID"].low is not None and not differences["good", "twin", "FID"].holds
    # `bad` has one run: FID differences with it have no interval.
    assert differences["good", "bad", "FID"].low is None and not differences["good", "bad", "FID"].holds
    assert differences["good", "bad", "FID"].difference == pytest.approx(41.0 - 90.0)
    assert differences["good", "twin", "mIoU"].interval_over == "runs and test images"
    assert differences["good", "twin", "FID"].interval_over == "training runs"
    assert differences["good", "bad", "mIoU"].interval_over == "test images"


def test_a_difference_with_a_row_of_few_runs_is_over_the_test_images_of_both():
    """Against a row of fewer than 3 runs the between-run spread of neither row is in the
    interval, as it says: the same as between the two rows' image-only draws."""
    runs = [("wide", 0.70, 40.0), ("wide#1", 0.90, 42.0), ("wide#2", 0.80, 41.0), ("few", 0.60, 90.0),
            ("real", 0.95, 10.0)]  # fmt: skip
    rows, draws, summaries, _ = table(runs)
    (difference,) = [d for d in replicates.pairwise(rows[:-1], summaries[:-1], draws[:-1]) if d.metric == "mIoU"]
    images_only = draws[0].over_images["mIoU"] - draws[1].over_images["mIoU"]
    assert difference.interval_over == "test images"
    assert (difference.low, difference.high) == pytest.approx(tuple(np.percentile(images_only, [2.5, 97.5])))
    assert difference.high - difference.low < summaries[0]["mIoU_high"] - summaries[0]["mIoU_low"]


def test_a_rows_interval_stays_in_the_range_of_its_metric():
    """Three runs far apart widen the interval past 100% accuracy and below 0 FID: clipped."""
    rows, _, (spade, _), _ = table([("spade", 0.55, 1.0), ("spade#1", 0.99, 60.0), ("spade#2", 0.98, 2.0),
                                    ("real", 0.95, 10.0)])
    assert spade["pixel_accuracy_high"] == 1.0 and spade["FID_low"] == 0.0


def test_the_runs_figure_draws_each_run_and_each_rows_interval():
    rows, _, summaries, _ = table([("spade", 0.7, 50.0), ("spade#1", 0.8, 60.0), ("spade#2", 0.9, 70.0),
                                   ("real", 0.95, 10.0)])
    points = spread_points(rows, summaries)
    assert list(points) == list(replicates.COMPARED)
    (spade, runs, mean, low, high), real = points["FID"]
    assert spade == "spade" and runs == [50.0, 60.0, 70.0] and mean == pytest.approx(60.0) and low < mean < high
    assert real[:2] == ("real", [10.0]) and real[3] is None
