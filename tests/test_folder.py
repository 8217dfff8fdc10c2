"""Folder source: images on disk in any common mode become 8-bit RGB; bad files are named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support import face_images

from pipeline.config import ConfigError, DataConfig, resolve
from pipeline.data.__main__ import prepare
from pipeline.errors import PipelineError
from pipeline.images import ImageReadError, load_rgb


def folder_config(folder, **overrides) -> DataConfig:
    section = {"source": "folder", "folder": str(folder), "subsample": None, "test_fraction": 0.25, **overrides}
    return DataConfig.from_dict(resolve({"data": section})["data"])


@pytest.fixture
def faces_dir(tmp_path):
    """Real faces (or generated stand-ins) in an FFHQ-like nested layout, plus a licence file."""
    root = tmp_path / "faces"
    for image_id, data in face_images(8).items():
        (root / "00000").mkdir(parents=True, exist_ok=True)
        suffix = ".jpg" if data[:2] == b"\xff\xd8" else ".png"
        (root / "00000" / f"{image_id}{suffix}").write_bytes(data)
    (root / "LICENSE.txt").write_text("CC BY-NC-SA 4.0")
    return root


def test_folder_images_are_found_recursively_and_split(faces_dir):
    rows = prepare(folder_config(faces_dir), threads=2)
    assert len(rows) == 8 and sum(row.split == "test" for row in rows) == 2
    assert all(row.path.startswith(str(faces_dir / "00000")) for row in rows)


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("gray.png", lambda: Image.new("L", (4, 4), 200), (200, 200, 200)),
        ("rgba.png", lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 255)), (10, 20, 30)),
        ("clear.png", lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 0)), (255, 255, 255)),
        ("palette.png", lambda: Image.new("RGB", (4, 4), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE), (0, 128, 255)),
        ("wide.png", lambda: Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)), (128, 128, 128)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
    ],
)
def test_any_mode_becomes_8bit_rgb(tmp_path, name, make, expected):
    path = tmp_path / name
    make().save(path)
    image = load_rgb(path)
    assert image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8
    assert np.abs(pixels[0, 0].astype(int) - expected).max() <= 2


def test_16bit_gray_is_scaled_not_clipped(tmp_path):
    ramp = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit
    assert np.asarray(load_rgb(path))[0, :, 0].tolist() == [0, 100, 255]


@pytest.mark.parametrize(
    "name, content",
    [
        ("broken.png", lambda good: good[: len(good) // 3]),  # truncated
        ("notes.jpg", lambda good: b"this is a text file, not a face"),  # not an image
    ],
)
def test_unreadable_image_is_an_error_naming_it(faces_dir, name, content):
    good = next((faces_dir / "00000").iterdir()).read_bytes()
    bad = faces_dir / "00000" / name
    bad.write_bytes(content(good))
    with pytest.raises(ImageReadError, match=str(bad)):
        prepare(folder_config(faces_dir), threads=2)


def test_duplicate_ids_are_an_error(faces_dir):
    first = next((faces_dir / "00000").iterdir())
    (faces_dir / "copy").mkdir()
    (faces_dir / "copy" / first.name).write_bytes(first.read_bytes())
    with pytest.raises(PipelineError, match=f"image id '{first.stem}' is also used by"):
        prepare(folder_config(faces_dir), threads=1)


def test_missing_or_empty_folder_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.folder: .* is not a directory"):
        prepare(folder_config(tmp_path / "nope"), threads=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="data.folder: no png/jpg images"):
        prepare(folder_config(tmp_path / "empty"), threads=1)
