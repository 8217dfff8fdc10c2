"""Fixtures shared by the test modules; plain helpers are in support.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_ffhq import FakeFfhq, FakeFfhqServer
from support import L_EYE, R_EYE, SKIN, face_images, shared_dir, shared_root

from pipeline.labelmaps import write_label


def pytest_collection_modifyitems(config, items):
    """A test marked gpu skips, saying why, where no CUDA device is visible (asked for with -m gpu
    on a CPU machine, as the GPU check's CPU mode does), rather than failing on the first CUDA call."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu_tests:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False here"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared with its offline FFHQ sample (test use only, never committed); the test skips,
    saying so, where it is absent."""
    found = shared_dir()
    if found is None:
        pytest.skip(f"needs the offline FFHQ sample in {shared_root() / 'data' / 'faces'} (set PIPELINE_SHARED)")
    return found


@pytest.fixture
def fake_ffhq():
    with FakeFfhqServer(FakeFfhq(images=face_images(12))) as fake:
        yield fake


@pytest.fixture(scope="session")
def pairs(tmp_path_factory) -> tuple[list[str], list[str]]:
    """Eight faces with blocky label maps (background, skin, an l_eye left and an r_eye right)."""
    folder = tmp_path_factory.mktemp("pairs")
    images, labels = [], []
    for index, (image_id, data) in enumerate(face_images(8).items()):
        image = folder / f"{image_id}.img"
        image.write_bytes(data)
        label = np.zeros((64, 64), np.uint8)
        label[8 + index : 56, 8:56] = SKIN
        label[20:28, 14:24], label[20:28, 40:50] = L_EYE, R_EYE
        write_label(label, folder / f"{image_id}.png", provenance="test")
        images.append(str(image))
        labels.append(str(folder / f"{image_id}.png"))
    return images, labels
