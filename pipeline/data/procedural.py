"""The procedural data source (`data.source: procedural`): face-like images with exact label
maps, the data of the offline demo and of the end-to-end test.

Without the pretrained face-parsing weights (or offline) real photos have no trustworthy
labels. These drawings do: every pixel's class is known because the label map is painted first
and the image is rendered from it. Classes are the parser's (pipeline.labelmaps), drawn back to
front: background, cloth, neck (+ necklace), hair behind the head, ears (+ earrings), face skin,
nose, lips and mouth, eyes, brows, glasses, hair over the head (sometimes with a fringe), hat.

Geometry lives in a face frame (u across, v down; the face oval is the unit circle) that is
shifted, scaled and rotated per image. Colours are drawn per image from wide ranges, then a
lighting gradient and noise go over everything, so no class can be told by one colour.
Left/right follow the subject, as CelebAMask-HQ does: l_eye is on the image's right.

    python -m pipeline.demo faces OUT_DIR COUNT [--seed S]   # writes OUT_DIR/{images,labels}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from pipeline.images import save_png
from pipeline.labelmaps import CLASS_NAMES, write_label
from pipeline.progress import progress

SIZE = 128
C = {name: index for index, name in enumerate(CLASS_NAMES)}


def _frame(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Face-frame coordinates (u, v) of every pixel centre, with pose jitter."""
    centre = size / 2 + rng.normal(0, size * 0.03, 2)
    half_width = size * rng.uniform(0.23, 0.28)
    half_height = half_width * rng.uniform(1.15, 1.35)
    angle = np.deg2rad(rng.normal(0, 7))
    y, x = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = x - centre[0], y - centre[1] + size * 0.06  # face sits a little above the centre
    cos, sin = np.cos(angle), np.sin(angle)
    return (cos * dx + sin * dy) / half_width, (-sin * dx + cos * dy) / half_height


def _ellipse(u, v, cu, cv, ru, rv):
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 < 1


def draw_labels(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    u, v = _frame(rng, size)
    labels = np.zeros((size, size), np.uint8)

    def paint(mask, name):
        labels[mask] = C[name]

    paint(_ellipse(u, v, 0, rng.uniform(2.2, 2.6), rng.uniform(1.8, 2.4), 1.1), "cloth")
    neck_width = rng.uniform(0.42, 0.55)
    paint((np.abs(u) < neck_width) & (v > 0.3) & (v < 1.6) & (labels != C["cloth"]), "neck")
    if rng.random() < 0.25:
        band = rng.uniform(1.05, 1.3)
        paint((np.abs(u) < neck_width) & (np.abs(v - band - 0.15 * u**2) < 0.05), "neck_l")
    long_hair = rng.random() < 0.45
    if long_hair:
        length = rng.uniform(0.8, 1.7)
        paint(_ellipse(u, v, 0, 0.0, rng.uniform(1.2, 1.45), 1.3) & (v < length), "hair")
    ear_v, ear_r = rng.uniform(-0.05, 0.15), rng.uniform(0.22, 0.3)
    for side, name in ((-1, "r_ear"), (1, "l_ear")):
        paint(_ellipse(u, v, side * 0.98, ear_v, 0.17, ear_r), name)
    if rng.random() < 0.3:
        for side in (-1, 1):
            paint(_ellipse(u, v, side * 1.0, ear_v + ear_r + 0.04, 0.07, 0.07), "ear_r")
    chin = rng.uniform(1.6, 2.4)  # superellipse exponent below the eyes: pointed to round chin
    face = np.where(v < 0, u**2 + v**2, np.abs(u) ** 2 + np.abs(v) ** chin) < 1
    paint(face, "skin")
    nose_length = rng.uniform(0.18, 0.28)
    paint(_ellipse(u, v, 0, 0.2, rng.uniform(0.09, 0.14), nose_length) & (v > 0.05), "nose")
    mouth_v, mouth_w = rng.uniform(0.55, 0.62), rng.uniform(0.22, 0.32)
    opening = rng.uniform(0.0, 0.06)
    paint(_ellipse(u, v, 0, mouth_v, mouth_w, 0.09) & (v < mouth_v), "u_lip")
    paint(_ellipse(u, v, 0, mouth_v, mouth_w * 0.9, 0.11) & (v >= mouth_v), "l_lip")
    if opening > 0.02:
        paint(_ellipse(u, v, 0, mouth_v, mouth_w * 0.8, opening), "mouth")
    eye_u, eye_v = rng.uniform(0.32, 0.42), rng.uniform(-0.22, -0.12)
    eye_w, eye_h = rng.uniform(0.13, 0.18), rng.uniform(0.05, 0.085)
    brow_gap, brow_arch = rng.uniform(0.14, 0.22), rng.uniform(0.0, 0.12)
    for side, eye, brow in ((-1, "r_eye", "r_brow"), (1, "l_eye", "l_brow")):
        paint(_ellipse(u, v, side * eye_u, eye_v, eye_w, eye_h), eye)
        du = u - side * eye_u
        brow_line = eye_v - brow_gap - brow_arch * (1 - (du / 0.2) ** 2)
        paint((np.abs(du) < 0.2) & (np.abs(v - brow_line) < 0.045), brow)
    if rng.random() < 0.25:
        ring = rng.uniform(0.2, 0.26)
        for side in (-1, 1):
            distance = np.hypot(u - side * eye_u, (v - eye_v) * 1.4)
            paint(np.abs(distance - ring) < 0.035, "eye_g")
        paint((np.abs(u) < eye_u - ring) & (np.abs(v - eye_v + 0.03) < 0.03), "eye_g")
    hairline = rng.uniform(-0.7, -0.45) + rng.uniform(0.2, 0.5) * u**2
    if rng.random() < 0.3:  # a fringe over the forehead
        hairline = np.maximum(hairline, rng.uniform(-0.4, -0.3) + 0.1 * np.sin(u * rng.uniform(8, 14)))
    scalp = _ellipse(u, v, 0, -0.08, rng.uniform(1.08, 1.2), rng.uniform(1.12, 1.3))
    sideburns = (np.abs(u) > 0.9) & (v < rng.uniform(-0.1, 0.2))
    paint(scalp & ((v < hairline) | sideburns), "hair")
    if rng.random() < 0.15:
        crown = rng.uniform(-0.55, -0.4)
        hat = _ellipse(u, v, 0, -0.6, 1.15, 0.75) & (v < crown)
        brim = (np.abs(v - crown) < 0.07) & (np.abs(u) < rng.uniform(1.25, 1.5))
        paint(hat | brim, "hat")
    return labels


def _colour(rng, low, high):
    return rng.uniform(low, high, 3).astype(np.float32)


def render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB image (uint8) for `labels`: per-image colours, textures, a light gradient and noise."""
    size = labels.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    skin = _colour(rng, [90, 50, 30], [250, 210, 180])
    hair = _colour(rng, [10, 5, 5], [240, 210, 160]) if rng.random() < 0.8 else _colour(rng, 0, 255)
    palette = {
        "background": _colour(rng, 0, 255),
        "skin": skin,
        "l_brow": hair * 0.6,
        "r_brow": hair * 0.6,
        "l_eye": np.array([235, 235, 230], np.float32),
        "r_eye": np.array([235, 235, 230], np.float32),
        "eye_g": _colour(rng, 0, 255),
        "l_ear": skin * 0.93,
        "r_ear": skin * 0.93,
        "ear_r": _colour(rng, [150, 120, 0], [255, 230, 120]),
        "nose": skin * 0.97,
        "mouth": _colour(rng, [30, 0, 0], [90, 30, 30]),
        "u_lip": _colour(rng, [140, 40, 40], [230, 120, 130]),
        "l_lip": None,
        "neck": skin * 0.85,
        "neck_l": _colour(rng, [150, 150, 150], [255, 240, 200]),
        "cloth": _colour(rng, 0, 255),
        "hair": hair,
        "hat": _colour(rng, 0, 255),
    }
    palette["l_lip"] = palette["u_lip"] * 1.08
    image = np.zeros((size, size, 3), np.float32)
    for name, colour in palette.items():
        image[labels == C[name]] = colour
    # Textures: streaks in hair, stripes on some clothes, a blotchy background.
    angle = rng.uniform(0, np.pi)
    streaks = np.sin((np.cos(angle) * x + np.sin(angle) * y) * rng.uniform(60, 120) + rng.normal(0, 1.5, (size, size)))
    image[labels == C["hair"]] *= (1 + 0.18 * streaks[labels == C["hair"]])[:, None]
    if rng.random() < 0.4:
        stripes = np.sign(np.sin(y * rng.uniform(20, 50) + x * rng.uniform(-10, 10)))
        image[labels == C["cloth"]] *= (1 + 0.15 * stripes[labels == C["cloth"]])[:, None]
    blotches = np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((size, size), Image.BICUBIC))
    image[labels == C["background"]] *= (0.8 + 0.4 * blotches[labels == C["background"]] / 255)[:, None]
    # Eyes: an iris of any colour with a pupil, at the centre of each eye.
    iris = _colour(rng, 20, 200)
    for name in ("l_eye", "r_eye"):
        ys, xs = np.nonzero(labels == C[name])
        if len(ys):
            cy, cx = ys.mean(), xs.mean()
            radius = max(1.5, (ys.max() - ys.min() + 1) * 0.5)
            distance = np.hypot(*np.mgrid[0:size, 0:size] - np.array([cy, cx])[:, None, None])
            eye = labels == C[name]
            image[eye & (distance < radius)] = iris
            image[eye & (distance < radius * 0.45)] = 15
    # Shading: the nose lit from one side, then light falling across the whole picture.
    nose = labels == C["nose"]
    if nose.any():
        side = np.sign(rng.normal()) * (x - x[nose].mean()) * size / 6
        image[nose] *= (1 + 0.12 * np.clip(side[nose], -1, 1))[:, None]
    direction = rng.normal(size=2)
    gradient = (direction[0] * (x - 0.5) + direction[1] * (y - 0.5)) / np.linalg.norm(direction)
    image *= (1 + rng.uniform(0.2, 0.6) * gradient)[..., None]
    image = np.asarray(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6)), np.float32)
    image += rng.normal(0, rng.uniform(3, 10), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def procedural_face(seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(image HxWx3 uint8, labels HxW uint8) for `seed`; the same seed always gives the same pair."""
    rng = np.random.default_rng([seed, 2019])
    labels = draw_labels(rng, size)
    return render(labels, rng), labels


def write_faces(out_dir: Path, seeds: range, size: int = SIZE) -> list[str]:
    """Write images/{id}.png and labels/{id}.png (label maps as the pipeline stores them); return
    the ids. A pair already there at this size is kept: the same seed always draws the same."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    ids = []
    for seed in progress(seeds, desc="draw faces", unit="face"):
        face_id = f"face{seed:06d}"
        image_path, label_path = out_dir / "images" / f"{face_id}.png", out_dir / "labels" / f"{face_id}.png"
        if not (label_path.exists() and image_path.exists() and Image.open(image_path).size == (size, size)):
            image, labels = procedural_face(seed, size)
            save_png(image, image_path)
            write_label(labels, label_path, provenance="procedural ground truth")
        ids.append(face_id)
    return ids
