"""A picture to check the parser by eye: a few faces, their label maps, overlays and a legend."""

from __future__ import annotations

import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from pipeline.images import load_rgb, save_png
from pipeline.labelmaps import CLASSES, colorize, read_label

TILE = 160
SWATCH = 14
ROW_LABELS = ("image", "label map", "overlay")


def preview(image_paths: Sequence[str | os.PathLike], label_paths: Sequence[str | os.PathLike]) -> Image.Image:
    """One column per face: the image, its colourised label map, and the two blended
    (as facexlib's visualisation: 40% image, 60% colours); the class legend on the right."""
    font = ImageFont.load_default()
    margin = 70  # left column of row names
    legend_width = 130
    width = margin + TILE * len(image_paths) + legend_width
    height = max(TILE * len(ROW_LABELS), (SWATCH + 6) * len(CLASSES) + 10)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for row, name in enumerate(ROW_LABELS):
        draw.text((6, row * TILE + TILE // 2 - 6), name, fill="black", font=font)
    for column, (image_path, label_path) in enumerate(zip(image_paths, label_paths)):
        colors = Image.fromarray(colorize(read_label(label_path)))
        image = load_rgb(image_path).resize(colors.size, Image.Resampling.BILINEAR)
        overlay = Image.blend(image, colors, 0.6)
        for row, tile in enumerate((image, colors, overlay)):
            canvas.paste(tile.resize((TILE, TILE), Image.Resampling.NEAREST), (margin + column * TILE, row * TILE))
    x = margin + TILE * len(image_paths) + 10
    for face_class in CLASSES:
        y = 8 + face_class.index * (SWATCH + 6)
        draw.rectangle((x, y, x + SWATCH, y + SWATCH), fill=face_class.color, outline="gray")
        draw.text((x + SWATCH + 6, y + 1), f"{face_class.index} {face_class.name}", fill="black", font=font)
    return canvas


def write_preview(
    image_paths: Sequence[str | os.PathLike], label_paths: Sequence[str | os.PathLike], out: str | os.PathLike
) -> None:
    save_png(preview(image_paths, label_paths), out)
