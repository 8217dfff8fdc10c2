"""The one way the pipeline reads a face image: whatever the file's mode, an 8-bit RGB image."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import PipelineError

# Modes Pillow uses for 16- and 32-bit single-channel PNGs.
_WIDE_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class ImageReadError(PipelineError):
    """A file that should be an image cannot be decoded."""


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode `path` fully and return it as 8-bit RGB.

    16-bit gray is scaled (65535 -> 255) rather than clipped; transparency is composited
    onto white so that colours hidden under transparent pixels never reach a model.
    """
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from None
    if image.mode in _WIDE_GRAY_MODES:
        gray = np.asarray(image).astype(np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(gray), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def _as_image(image: Image.Image | np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image


def save_png(image: Image.Image | np.ndarray, path: str | os.PathLike) -> None:
    """Write an image (or an HxWx3 / HxW uint8 array) as PNG, atomically."""
    from pipeline.files import atomic_path

    with atomic_path(path) as tmp:
        _as_image(image).save(tmp, format="PNG")


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """An image (or an HxWx3 / HxW uint8 array) as the bytes of a PNG file."""
    buffer = io.BytesIO()
    _as_image(image).save(buffer, format="PNG")
    return buffer.getvalue()
