"""Segmentation metrics of re-segmented faces against the label maps they were made from.

Everything comes from confusion matrices (rows: ground truth, columns: prediction): one per
test image, summed over the test set for the reported numbers, resampled over images for the
bootstrap confidence intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.labelmaps import NUM_CLASSES


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """num_classes x num_classes pixel counts; truth and prediction are equal-shaped class maps."""
    if truth.shape != prediction.shape:
        raise ValueError(f"label maps differ in shape: {truth.shape} vs {prediction.shape}")
    pairs = truth.astype(np.int64).ravel() * num_classes + prediction.astype(np.int64).ravel()
    return np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def pixel_accuracy(matrix: np.ndarray) -> float:
    return float(np.trace(matrix) / matrix.sum())


def per_class_iou(matrix: np.ndarray) -> np.ndarray:
    """IoU of each class; NaN for a class absent from both ground truth and prediction."""
    intersection = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth or the prediction."""
    return float(np.nanmean(per_class_iou(matrix)))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def bootstrap_intervals(
    per_image: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[Interval, Interval]:
    """Percentile bootstrap over test images of pixel accuracy and mIoU.

    per_image: N x K x K confusion matrices. Each resample draws N images with replacement
    (as multinomial counts) and sums their matrices, so a resample's metrics are computed
    exactly as the reported ones are.
    """
    n_images, k, _ = per_image.shape
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=resamples)
    matrices = (counts @ per_image.reshape(n_images, k * k).astype(np.float64)).reshape(resamples, k, k)
    diagonal = np.diagonal(matrices, axis1=1, axis2=2)
    accuracy = diagonal.sum(axis=1) / matrices.sum(axis=(1, 2))
    union = matrices.sum(axis=1) + matrices.sum(axis=2) - diagonal
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, diagonal / union, np.nan)
    miou = np.nanmean(iou, axis=1)
    tail = 100 * (1 - confidence) / 2
    return (
        Interval(*np.percentile(accuracy, [tail, 100 - tail]).tolist()),
        Interval(*np.percentile(miou, [tail, 100 - tail]).tolist()),
    )
