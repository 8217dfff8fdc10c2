"""A fake CelebAMask-HQ tree, laid out as the unpacked archive, drawn from procedural faces whose
exact label maps are known: each image's part masks are cut from its label map so that merging
them in the dataset's order gives that label map back, with deliberate overlaps (the skin mask
covers the whole face, as the dataset's do; the hair mask reaches under the hat) and absent parts
(no file for a part the face does not show)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.celebamask_hq import (
    IMAGE_DIR,
    IMAGE_SIZE,
    MAPPING_FILE,
    MASK_SIZE,
    MERGE_ORDER,
    PART_CLASS,
    image_id,
    mask_folder,
)
from pipeline.data.procedural import procedural_face

# Ids on both sides of the index split's first test id (28,000), in two mask folders (13 and 14).
TRAIN_IDS = tuple(range(27_988, 28_000))
TEST_IDS = tuple(range(28_000, 28_008))


def expected_labels(index: int) -> np.ndarray:
    """The 512x512 label map that merging the fake masks of image `index` must give."""
    _, labels = procedural_face(index, 128)
    return np.asarray(Image.fromarray(labels).resize((MASK_SIZE, MASK_SIZE), Image.Resampling.NEAREST))


def part_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Part name -> 0/255 mask, such that painting them in MERGE_ORDER gives `labels` back."""
    masks = {}
    for position, part in enumerate(MERGE_ORDER):
        later = [PART_CLASS[p] for p in MERGE_ORDER[position + 1 :]]
        mask = labels == PART_CLASS[part]
        if part == "skin":  # overlaps every later part on the face
            mask |= np.isin(labels, [PART_CLASS[p] for p in MERGE_ORDER[1:12]])
        if part == "hair":  # reaches under the hat, which comes later
            mask |= labels == PART_CLASS["hat"]
        assert not (mask & ~np.isin(labels, [PART_CLASS[part], *later])).any()
        if mask.any():
            masks[part] = np.where(mask, 255, 0).astype(np.uint8)
    return masks


def write_image(root: Path, index: int) -> None:
    image, labels = procedural_face(index, 128)
    path = root / IMAGE_DIR / f"{index}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC).save(path, quality=90)
    folder = mask_folder(root, index)
    folder.mkdir(parents=True, exist_ok=True)
    for part, mask in part_masks(expected_labels(index)).items():
        Image.fromarray(mask, "L").save(folder / f"{image_id(index)}_{part}.png")


def write_mapping(root: Path, originals: dict[int, int]) -> None:
    """CelebA-HQ-to-CelebA-mapping.txt with a header, as the archive has it."""
    rows = [f"{'idx':<6} {'orig_idx':<8} orig_file"]
    rows += [f"{index:<6} {number - 1:<8} {number:06d}.jpg" for index, number in sorted(originals.items())]
    (root / MAPPING_FILE).write_text("\n".join(rows) + "\n")


def build_tree(root: Path, ids=TRAIN_IDS + TEST_IDS) -> Path:
    for index in ids:
        write_image(root, index)
    # CelebA originals: train, the last train and first val file, val, the last val and first test file, test.
    numbers = [1, 162_770, 162_771, 170_000, 182_637, 182_638, 200_000]
    write_mapping(root, {index: numbers[k % len(numbers)] for k, index in enumerate(ids)})
    return root


