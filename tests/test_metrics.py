"""Segmentation metrics on hand-made confusion matrices, and their bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import bootstrap_intervals, confusion_matrix, mean_iou, per_class_iou, pixel_accuracy


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
