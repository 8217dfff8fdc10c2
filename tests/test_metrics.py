"""Segmentation metrics on hand-made confusion matrices, and their bootstrap intervals over test images
and training runs, checked for coverage and power on simulated tables whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import (
    Interval,
    bootstrap_intervals,
    confusion_matrix,
    image_draws,
    mean_iou,
    per_class_iou,
    percentile_interval,
    pixel_accuracy,
    replicate_draws,
    segmentation_draws,
    value_draws,
)


def test_confusion_matrix_counts_truth_rows_and_prediction_columns():
    truth = np.array([[0, 0], [1, 2]])
    prediction = np.array([[0, 1], [1, 1]])
    matrix = confusion_matrix(truth, prediction, num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_hand_made_matrix_with_an_absent_class():
    # class 0: 7 right, 2 predicted as 1, 1 as 3; class 1: 5 right, 5 predicted as 0;
    # class 2 absent from both ground truth and prediction; class 3 only ever predicted.
    matrix = np.array([[7, 2, 0, 1], [5, 5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert pixel_accuracy(matrix) == pytest.approx(12 / 20)
    iou = per_class_iou(matrix)
    assert iou[0] == pytest.approx(7 / (10 + 12 - 7))
    assert iou[1] == pytest.approx(5 / (10 + 7 - 5))
    assert np.isnan(iou[2])  # absent from both: left out of the mean
    assert iou[3] == 0  # predicted but never true: counts as 0
    assert mean_iou(matrix) == pytest.approx((7 / 15 + 5 / 12 + 0) / 3)


def test_a_map_with_itself_scores_one():
    labels = np.random.default_rng(0).integers(0, 19, (32, 32))
    matrix = confusion_matrix(labels, labels)
    assert pixel_accuracy(matrix) == 1 and mean_iou(matrix) == 1


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_images():
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        truth = rng.integers(0, 4, (n, 16, 16))
        noisy = np.where(rng.random((n, 16, 16)) < 0.8, truth, rng.integers(0, 4, (n, 16, 16)))
        return np.stack([confusion_matrix(t, p, 4) for t, p in zip(truth, noisy)])

    few, many = images(10), images(200)
    accuracy_few, miou_few = bootstrap_intervals(few)
    accuracy_many, miou_many = bootstrap_intervals(many)
    total = many.sum(axis=0)
    assert accuracy_many.low <= pixel_accuracy(total) <= accuracy_many.high
    assert miou_many.low <= mean_iou(total) <= miou_many.high
    assert accuracy_many.high - accuracy_many.low < accuracy_few.high - accuracy_few.low
    assert bootstrap_intervals(many) == (accuracy_many, miou_many)  # seeded


def test_identical_images_give_a_zero_width_interval():
    labels = np.random.default_rng(1).integers(0, 3, (8, 8))
    per_image = np.stack([confusion_matrix(labels, labels, 3)] * 5)
    accuracy, miou = bootstrap_intervals(per_image)
    assert accuracy.low == accuracy.high == 1 and miou.low == miou.high == 1


def _one_replicate(resamples: int) -> np.ndarray:
    return np.ones((resamples, 1), dtype=np.int64)


def test_bootstrap_intervals_are_the_image_bootstrap_they_always_were():
    rng = np.random.default_rng(2)
    per_image = rng.integers(0, 50, (60, 4, 4))
    per_image[:, 2, :] = per_image[:, :, 2] = 0  # a class absent from every image
    counts = np.random.default_rng(3).multinomial(60, np.full(60, 1 / 60), size=200)  # as ever drawn
    assert np.array_equal(image_draws(60, 200, seed=3), counts)
    summed = [np.tensordot(c, per_image, axes=1) for c in counts]
    accuracy, miou = np.array([pixel_accuracy(m) for m in summed]), np.array([mean_iou(m) for m in summed])
    draws = segmentation_draws(per_image[np.newaxis], counts, _one_replicate(200))
    np.testing.assert_allclose(draws["pixel_accuracy"], accuracy, rtol=1e-12)
    np.testing.assert_allclose(draws["mIoU"], miou, rtol=1e-12)
    expected = (percentile_interval(accuracy, 0.9), percentile_interval(miou, 0.9))
    got = bootstrap_intervals(per_image, resamples=200, confidence=0.9, seed=3)
    for interval, known in zip(got, expected):
        assert (interval.low, interval.high) == pytest.approx((known.low, known.high), rel=1e-12)


def test_one_replicate_or_identical_ones_leave_the_image_bootstrap_alone():
    rng = np.random.default_rng(4)
    per_image = rng.integers(0, 30, (1, 25, 3, 3))
    images = image_draws(25, 100, seed=5)
    alone = segmentation_draws(per_image, images, _one_replicate(100))
    copies = segmentation_draws(np.repeat(per_image, 4, axis=0), images, replicate_draws(4, 100, seed=6))
    for metric in ("pixel_accuracy", "mIoU"):
        assert alone[metric].shape == (100,) and alone[metric].std() > 0
        np.testing.assert_allclose(copies[metric], alone[metric], rtol=1e-12)
    assert np.all(value_draws(np.array([17.5]), _one_replicate(100)) == 17.5)


def test_replicate_spread_is_widened_to_students_t():
    # Two runs scoring 0 and 2, resampled as (0, 0), (0, 2), (2, 2): the raw deviations -1, 0, 1 from the
    # mean are scaled by sqrt(2 / 1) (Bessel) times t(1 df) / normal at 97.5% (12.706 / 1.960).
    scale = np.sqrt(2) * 12.706204736174707 / 1.959963984540054
    draws = value_draws(np.array([0.0, 2.0]), np.array([[2, 0], [1, 1], [0, 2]]))
    np.testing.assert_allclose(draws, [1 - scale, 1, 1 + scale], rtol=1e-8)


def test_a_class_absent_everywhere_is_left_out_of_the_mean_iou():
    rng = np.random.default_rng(7)
    per_image = rng.integers(1, 20, (3, 30, 4, 4))
    per_image[:, :, 3, :] = per_image[:, :, :, 3] = 0
    images = image_draws(30, 50, seed=8)
    per_replicate = [segmentation_draws(per_image[r : r + 1], images, _one_replicate(50))["mIoU"] for r in range(3)]
    assert per_replicate[0][0] == pytest.approx(mean_iou(np.tensordot(images[0], per_image[0], axes=1)))
    assert np.isfinite(per_replicate).all()
    # Every run drawn once: the plain mean of the runs, whatever the scaling.
    miou = segmentation_draws(per_image, images, np.ones((50, 3), dtype=np.int64))["mIoU"]
    np.testing.assert_allclose(miou, np.mean(per_replicate, axis=0), rtol=1e-12)
    with pytest.raises(ValueError):
        segmentation_draws(per_image, images, np.ones((50, 2), dtype=np.int64))


# Simulated tables: K classes, M test images, R training runs per row, B resamples.
CLASSES, IMAGES, RUNS, RESAMPLES, TABLES = 3, 50, 5, 400, 400
CLASS_LOGITS = np.array([1.5, 1.0, 0.5])  # each class's pixel accuracy, as a logit, of the average run
RUN_SD = 0.25  # between training runs, on that logit
IMAGE_SD = 0.5  # image difficulty, shared by every row and run
NOISE_SD = 0.1  # run x image


def _simulated_row(rng: np.random.Generator, pixels: np.ndarray, difficulty: np.ndarray, shift: float) -> np.ndarray:
    """(RUNS, IMAGES, K, K) confusion matrices of one model whose runs differ by a logit offset each; the wrong
    pixels of a class are predicted as the next class."""
    logit = (
        CLASS_LOGITS
        + shift
        + rng.normal(0.0, RUN_SD, (RUNS, 1, 1))
        - difficulty[:, np.newaxis]
        + rng.normal(0.0, NOISE_SD, (RUNS, IMAGES, 1))
    )
    correct = rng.binomial(np.broadcast_to(pixels, logit.shape), 1 / (1 + np.exp(-logit)))
    matrices = np.zeros((RUNS, IMAGES, CLASSES, CLASSES), dtype=np.int64)
    classes = np.arange(CLASSES)
    matrices[..., classes, classes] = correct
    matrices[..., classes, (classes + 1) % CLASSES] = pixels - correct
    return matrices


def _segmentation_differences(shift: float) -> dict[str, list[Interval]]:
    """Intervals of row A minus row B over TABLES tables, A's logits shifted by shift, images shared."""
    rng = np.random.default_rng(11)
    intervals: dict[str, list[Interval]] = {"pixel_accuracy": [], "mIoU": []}
    for table in range(TABLES):
        pixels = rng.multinomial(300, rng.dirichlet(np.full(CLASSES, 2.0), IMAGES))
        difficulty = rng.normal(0.0, IMAGE_SD, IMAGES)
        a, b = _simulated_row(rng, pixels, difficulty, shift), _simulated_row(rng, pixels, difficulty, 0.0)
        images = image_draws(IMAGES, RESAMPLES, seed=3 * table)
        draws_a = segmentation_draws(a, images, replicate_draws(RUNS, RESAMPLES, seed=3 * table + 1))
        draws_b = segmentation_draws(b, images, replicate_draws(RUNS, RESAMPLES, seed=3 * table + 2))
        for metric, found in intervals.items():
            found.append(percentile_interval(draws_a[metric] - draws_b[metric]))
    return intervals


def _value_differences(shift: float, sd: float = 1.5) -> list[Interval]:
    """Intervals of row A minus row B of a FID-like score, one value per run, A's runs shifted by shift."""
    rng = np.random.default_rng(12)
    intervals = []
    for table in range(TABLES):
        a, b = 20.0 + shift + rng.normal(0.0, sd, RUNS), 20.0 + rng.normal(0.0, sd, RUNS)
        draws_a = value_draws(a, replicate_draws(RUNS, RESAMPLES, seed=2 * table))
        draws_b = value_draws(b, replicate_draws(RUNS, RESAMPLES, seed=2 * table + 1))
        intervals.append(percentile_interval(draws_a - draws_b))
    return intervals


def _covering_zero(intervals: list[Interval]) -> float:
    return float(np.mean([interval.low <= 0 <= interval.high for interval in intervals]))


def test_the_simulated_runs_spread_more_than_the_images():
    # The coverage below is about the training runs only if they, not the images, dominate the spread.
    rng = np.random.default_rng(13)
    pixels = rng.multinomial(300, rng.dirichlet(np.full(CLASSES, 2.0), IMAGES))
    row = _simulated_row(rng, pixels, rng.normal(0.0, IMAGE_SD, IMAGES), 0.0)
    between_runs = np.std([mean_iou(run.sum(axis=0)) for run in row], ddof=1)
    over_images = segmentation_draws(row[:1], image_draws(IMAGES, RESAMPLES), _one_replicate(RESAMPLES))["mIoU"]
    assert between_runs > over_images.std()


def test_equal_rows_differ_by_zero_inside_95_percent_of_intervals():
    for metric, intervals in _segmentation_differences(0.0).items():
        assert 0.90 <= _covering_zero(intervals) <= 0.99, metric
    assert 0.90 <= _covering_zero(_value_differences(0.0)) <= 0.99


def test_a_difference_of_three_between_run_sds_is_found():
    for metric, intervals in _segmentation_differences(3 * RUN_SD).items():
        assert np.mean([interval.low > 0 for interval in intervals]) >= 0.8, metric
    assert np.mean([interval.low > 0 for interval in _value_differences(3 * 1.5)]) >= 0.8
