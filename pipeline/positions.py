"""CLADE's intra-class positional encoding (Tan et al. 2021): where each pixel lies within its
region of the label map, as a 2-channel distance map that its class-adaptive norms modulate gamma
and beta with, since a per-class lookup alone gives every pixel of a class the same gamma and beta.

A region is a connected component (8-connected) of one class; background is skipped (zeros).
Each pixel's channels are its row and column offsets from its region's centroid, each divided by
the largest absolute offset in that region (so in [-1, 1]), as CLADE's util/cal_dist_masks.py
computes them. Computed from the label map as the generator sees it (after resizing and any
flip with its left/right classes swapped), so it always matches the map it encodes."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

BACKGROUND = 0
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# CLADE adds this to the largest absolute offset before dividing (a one-pixel region's offsets are 0).
EPSILON = 1e-5


def distance_map(labels: np.ndarray) -> np.ndarray:
    """H x W class indices -> 2 x H x W float32: row and column offsets within each region."""
    regions = np.zeros(labels.shape, dtype=np.int64)
    count = 0
    for cls in np.unique(labels):
        if cls == BACKGROUND:
            continue
        components, found = ndimage.label(labels == cls, structure=EIGHT_CONNECTED)
        regions[components > 0] = components[components > 0] + count
        count += found
    flat = regions.ravel()
    sizes = np.maximum(np.bincount(flat, minlength=count + 1), 1)
    # Each region's bounding box holds its extreme rows and columns: the largest offsets.
    boxes = ndimage.find_objects(regions)
    offsets = []
    for axis, coordinate in enumerate(np.indices(labels.shape, dtype=np.float64)):
        centroid = np.bincount(flat, weights=coordinate.ravel(), minlength=count + 1) / sizes
        first = np.array([0] + [box[axis].start for box in boxes], dtype=np.float64)
        last = np.array([0] + [box[axis].stop - 1 for box in boxes], dtype=np.float64)
        largest = np.maximum(last - centroid, centroid - first)
        offset = (coordinate - centroid[regions]) / (largest[regions] + EPSILON)
        offsets.append(np.where(regions > 0, offset, 0.0))
    return np.stack(offsets).astype(np.float32)


def distance_maps(labels: torch.Tensor) -> torch.Tensor:
    """N x H x W class indices -> N x 2 x H x W float32 distance maps (on the CPU)."""
    return torch.from_numpy(np.stack([distance_map(image) for image in labels.cpu().numpy()]))
