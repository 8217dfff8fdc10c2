"""Segmentation metrics of re-segmented faces against the label maps they were made from.

Everything comes from confusion matrices (rows: ground truth, columns: prediction): one per
test image, summed over the test set for the reported numbers, resampled over images (and over
training runs, where a model was trained several times) for the bootstrap confidence intervals.
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
    """IoU of each class of a K x K matrix, or of each of a stack (..., K, K) of them;
    NaN for a class absent from both ground truth and prediction."""
    intersection = np.diagonal(matrix, axis1=-2, axis2=-1).astype(np.float64)
    union = matrix.sum(axis=-2) + matrix.sum(axis=-1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth or the prediction."""
    return float(np.nanmean(per_class_iou(matrix)))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def _accuracy_and_miou(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel accuracy and mIoU of each of a stack (..., K, K) of confusion matrices, as the scalar functions."""
    accuracy = np.diagonal(matrices, axis1=-2, axis2=-1).sum(axis=-1) / matrices.sum(axis=(-2, -1))
    return accuracy, np.nanmean(per_class_iou(matrices), axis=-1)


def _multinomial_draws(n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)


def image_draws(n_images: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n_images) multinomial counts: the test images of each resample, drawn with replacement.
    One draw is shared by every row of a table, so that rows' differences are paired over images."""
    return _multinomial_draws(n_images, resamples, seed)


def replicate_draws(n_replicates: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_replicates) multinomial counts of each row's training runs, drawn with replacement."""
    return _multinomial_draws(n_replicates, resamples, seed)


def _student_over_normal(degrees: int, confidence: float) -> float:
    """Ratio of Student's t to the normal two-sided quantile at this confidence."""
    from scipy.stats import norm, t

    return float(t.ppf((1 + confidence) / 2, degrees) / norm.ppf((1 + confidence) / 2))


def _replicate_level(metric: np.ndarray, replicates: np.ndarray, confidence: float) -> np.ndarray:
    """(B,) statistic of (B, R) per-replicate metrics under (B, R) replicate counts.

    Each resample's deviation from the plain mean of the replicates is widened, as resampling few runs is
    too narrow twice over. The mean of R values drawn from R has (R - 1) / R of the unbiased variance of
    their mean: scaled by sqrt(R / (R - 1)), the standard small-sample (Bessel) variance correction. And
    that variance is itself estimated from R values, so a row's interval would still cover only ~86% at
    R = 5 (simulated, for 95%): scaled also by Student's t with R - 1 degrees of freedom over the normal
    quantile, the textbook t interval of a mean of R values. With one replicate there is nothing to resample.
    """
    if metric.shape != replicates.shape:
        raise ValueError(f"metrics {metric.shape} and replicate draws {replicates.shape} differ in shape")
    n_replicates = metric.shape[1]
    if n_replicates == 1:
        return metric[:, 0].copy()
    scale = np.sqrt(n_replicates / (n_replicates - 1)) * _student_over_normal(n_replicates - 1, confidence)
    resampled = (replicates * metric).sum(axis=1) / n_replicates
    plain = metric.mean(axis=1)
    return plain + scale * (resampled - plain)


def segmentation_draws(
    per_image: np.ndarray, images: np.ndarray, replicates: np.ndarray, confidence: float = 0.95
) -> dict[str, np.ndarray]:
    """per_image: (R, M, K, K) confusion matrices (replicate, test image); images: (B, M) from image_draws;
    replicates: (B, R) from replicate_draws. Returns {"pixel_accuracy": (B,), "mIoU": (B,)}: each resample's
    mean over the drawn replicates of the metric of the drawn images' summed confusion matrix.
    The replicate-level spread is sized for intervals at this confidence: give percentile_interval the same."""
    n_replicates, n_images, k, _ = per_image.shape
    resamples = images.shape[0]
    if images.shape[1] != n_images or replicates.shape[1] != n_replicates or replicates.shape[0] != resamples:
        raise ValueError(f"draws {images.shape}, {replicates.shape} do not fit matrices {per_image.shape}")
    accuracy = np.empty((resamples, n_replicates))
    miou = np.empty((resamples, n_replicates))
    counts = images.astype(np.float64)
    for r in range(n_replicates):  # one (B, M) @ (M, K*K) product per replicate keeps memory at (B, K*K)
        summed = counts @ per_image[r].reshape(n_images, k * k).astype(np.float64)
        accuracy[:, r], miou[:, r] = _accuracy_and_miou(summed.reshape(resamples, k, k))
    return {
        "pixel_accuracy": _replicate_level(accuracy, replicates, confidence),
        "mIoU": _replicate_level(miou, replicates, confidence),
    }


def value_draws(values: np.ndarray, replicates: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """values: (R,) one score per replicate (FID, KID: too costly to recompute per image resample, so only
    the training runs are resampled); returns (B,) the drawn replicates' mean per resample.
    The spread is sized for intervals at this confidence: give percentile_interval the same."""
    values = np.asarray(values, dtype=np.float64)
    return _replicate_level(np.broadcast_to(values, replicates.shape), replicates, confidence)


def percentile_interval(draws: np.ndarray, confidence: float = 0.95) -> Interval:
    """Percentile interval of resampled statistics (NaN-free input expected)."""
    tail = 100 * (1 - confidence) / 2
    return Interval(*np.percentile(draws, [tail, 100 - tail]).tolist())


def bootstrap_intervals(
    per_image: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[Interval, Interval]:
    """Percentile bootstrap over test images of pixel accuracy and mIoU.

    per_image: N x K x K confusion matrices. Each resample draws N images with replacement
    (as multinomial counts) and sums their matrices, so a resample's metrics are computed
    exactly as the reported ones are. This is the one-replicate case of segmentation_draws.
    """
    images = image_draws(per_image.shape[0], resamples, seed)
    draws = segmentation_draws(per_image[np.newaxis], images, np.ones((resamples, 1), dtype=np.int64), confidence)
    return percentile_interval(draws["pixel_accuracy"], confidence), percentile_interval(draws["mIoU"], confidence)
