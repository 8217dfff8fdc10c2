"""The project's one face-class table, and how label maps are stored.

Classes are in the order of the face parser's output channels (facexlib's BiSeNet, trained
by face-parsing.PyTorch on CelebAMask-HQ). CelebAMask-HQ's own annotation order differs;
the parser's order is the one every label map in this pipeline uses.

A label map file is a palette PNG: pixel values are class indices, and the palette makes it
viewable in any image viewer. A text chunk records what made it (see `write_label`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from pipeline.errors import PipelineError
from pipeline.files import atomic_path


@dataclass(frozen=True)
class FaceClass:
    index: int
    name: str
    color: tuple[int, int, int]


CLASSES: tuple[FaceClass, ...] = tuple(
    FaceClass(index, name, color)
    for index, (name, color) in enumerate(
        [
            ("background", (0, 0, 0)),
            ("skin", (230, 160, 120)),
            ("l_brow", (110, 60, 20)),
            ("r_brow", (170, 100, 40)),
            ("l_eye", (30, 90, 255)),
            ("r_eye", (0, 180, 255)),
            ("eye_g", (200, 200, 200)),
            ("l_ear", (255, 120, 0)),
            ("r_ear", (255, 190, 0)),
            ("ear_r", (255, 255, 0)),
            ("nose", (255, 0, 130)),
            ("mouth", (110, 0, 0)),
            ("u_lip", (220, 30, 30)),
            ("l_lip", (255, 100, 100)),
            ("neck", (150, 100, 200)),
            ("neck_l", (0, 255, 200)),
            ("cloth", (0, 110, 60)),
            ("hair", (90, 40, 130)),
            ("hat", (0, 210, 0)),
        ]
    )
)
NUM_CLASSES = len(CLASSES)
CLASS_NAMES = tuple(c.name for c in CLASSES)

# A horizontally flipped face swaps its left and right parts: class -> class after a flip.
FLIPPED_CLASS = np.arange(NUM_CLASSES, dtype=np.uint8)
for _left, _right in (("l_brow", "r_brow"), ("l_eye", "r_eye"), ("l_ear", "r_ear")):
    _l, _r = CLASS_NAMES.index(_left), CLASS_NAMES.index(_right)
    FLIPPED_CLASS[_l], FLIPPED_CLASS[_r] = _r, _l

# PNG palettes have 256 entries; indices past the table are drawn white so that a stray
# value stands out instead of looking like background.
_PALETTE = np.full((256, 3), 255, dtype=np.uint8)
_PALETTE[:NUM_CLASSES] = [c.color for c in CLASSES]

# The text chunk of a label PNG that names the parser (weights, size, precision) that made it.
PROVENANCE_KEY = "parser"


class LabelMapError(PipelineError):
    """A file that should be a label map is not one."""


def colorize(labels: np.ndarray) -> np.ndarray:
    """HxW class indices -> HxWx3 uint8 colours of the class table."""
    return _PALETTE[labels]


def write_label(labels: np.ndarray, path: str | os.PathLike, provenance: str) -> None:
    """Write an HxW uint8 map of class indices as a palette PNG, atomically."""
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), "P")
    image.putpalette(_PALETTE.tobytes())
    info = PngImagePlugin.PngInfo()
    info.add_text(PROVENANCE_KEY, provenance)
    with atomic_path(path) as tmp:
        # Label maps are large flat regions: the fastest zlib level already compresses them well.
        image.save(tmp, format="PNG", pnginfo=info, compress_level=1)


def label_provenance(path: str | os.PathLike) -> str | None:
    """The provenance recorded in a label PNG (read from its header only), or None when
    the file is missing, unreadable or has none."""
    try:
        with Image.open(path) as image:
            return image.info.get(PROVENANCE_KEY) if image.format == "PNG" else None
    except (OSError, ValueError):
        return None


def read_label(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 class indices from a label PNG; refuses anything that is not one."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise LabelMapError(f"{path}: not a label map (image mode {image.mode}, expected palette or gray)")
            labels = np.asarray(image)
    except (OSError, ValueError, SyntaxError) as err:
        raise LabelMapError(f"{path}: not a readable label map ({err})") from None
    if labels.size and labels.max() >= NUM_CLASSES:
        raise LabelMapError(f"{path}: class index {labels.max()} out of range 0-{NUM_CLASSES - 1}")
    return labels
