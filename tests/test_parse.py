"""The face parsing stage: parity with facexlib's reference inference, invariance to batching,
resumable output, bad images, and how the weights are found, downloaded and verified."""

from __future__ import annotations

import contextlib
import functools
import http.server
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from facexlib.parsing.bisenet import BiSeNet
from facexlib.utils.misc import img2tensor
from seeded_parser import write_seeded_weights
from support import REPO, face_images
from torchvision.transforms.functional import normalize

from pipeline.download import RetryPolicy
from pipeline.errors import PipelineError
from pipeline.files import file_digest
from pipeline.labelmaps import CLASS_NAMES, read_label, write_label
from pipeline.parse.parser import FaceParser, parse_images
from pipeline.parse.weights import BISENET_SHA256, BISENET_SIZE, WeightsError, download_weights, load_bisenet

QUICK = RetryPolicy(retries=1, timeout_s=2, backoff_s=0)


@pytest.fixture(scope="session")
def seeded_weights(tmp_path_factory) -> Path:
    return write_seeded_weights(tmp_path_factory.mktemp("weights") / "seeded_bisenet.pth")


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> list[Path]:
    """Six face files: real FFHQ photos from ../shared, or generated images without it."""
    folder = tmp_path_factory.mktemp("faces")
    paths = []
    for image_id, data in face_images(6).items():
        suffix = ".jpg" if data.startswith(b"\xff\xd8") else ".png"
        path = folder / f"{image_id}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def reference_labels(weights: Path, image_path: Path, size: int) -> np.ndarray:
    """facexlib's inference/inference_parsing.py, step by step: cv2 reads BGR, bilinear resize,
    /255 with BGR->RGB, ImageNet normalisation, first output, argmax."""
    net = BiSeNet(num_class=19)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    img = cv2.resize(cv2.imread(str(image_path)), (size, size), interpolation=cv2.INTER_LINEAR)
    tensor = img2tensor(img.astype("float32") / 255.0, bgr2rgb=True, float32=True)
    normalize(tensor, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), inplace=True)
    with torch.no_grad():
        out = net(tensor.unsqueeze(0))[0]
    return out.squeeze(0).numpy().argmax(0)


def parse_to(folder: Path, parser: FaceParser, sources, batch_size=2, workers=0) -> list[Path]:
    destinations = [folder / f"{Path(s).stem}.png" for s in sources]
    parse_images(parser, sources, destinations, batch_size=batch_size, workers=workers)
    return destinations


# --- parity and invariance -----------------------------------------------------------------


def test_label_maps_match_facexlibs_reference_inference(seeded_weights, faces, tmp_path):
    size = 512  # facexlib's own size
    parser = FaceParser(seeded_weights, size, device="cpu")
    outputs = parse_to(tmp_path, parser, faces[:3], batch_size=2, workers=1)
    for face, output in zip(faces, outputs):
        ours, reference = read_label(output), reference_labels(seeded_weights, face, size)
        assert ours.shape == reference.shape == (size, size)
        assert len(np.unique(reference)) >= 5, "the seeded parser must give varied maps, or parity means nothing"
        assert (ours == reference).mean() >= 0.999, face.name


def test_batch_size_and_workers_do_not_change_label_maps(seeded_weights, faces, tmp_path):
    parser = FaceParser(seeded_weights, 128, device="cpu")
    one_by_one = parse_to(tmp_path / "a", parser, faces, batch_size=1, workers=0)
    batched = parse_to(tmp_path / "b", parser, faces, batch_size=4, workers=2)
    for a, b in zip(one_by_one, batched):
        np.testing.assert_array_equal(read_label(a), read_label(b))


def test_label_map_is_a_palette_png_of_class_indices_with_provenance(seeded_weights, faces, tmp_path):
    from PIL import Image

    parser = FaceParser(seeded_weights, 64, device="cpu")
    (output,) = parse_to(tmp_path, parser, faces[:1])
    with Image.open(output) as image:
        assert image.mode == "P" and image.size == (64, 64)
        assert image.info["parser"] == parser.provenance
        assert file_digest(seeded_weights, "sha256") in parser.provenance
        assert tuple(image.getpalette()[3:6]) == (230, 160, 120)  # skin's colour


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_label_maps_agree_with_cpu_fp32(seeded_weights, faces, tmp_path, record_property):
    cpu = parse_to(tmp_path / "cpu", FaceParser(seeded_weights, 512, device="cpu"), faces[:4])
    cuda = parse_to(tmp_path / "cuda", FaceParser(seeded_weights, 512, device="cuda", amp=True), faces[:4], workers=2)
    agreement = [(read_label(a) == read_label(b)).mean() for a, b in zip(cpu, cuda)]
    record_property("min_pixel_agreement", float(min(agreement)))  # the GPU check reports it
    assert min(agreement) >= 0.99


# --- resuming and errors -------------------------------------------------------------------


def test_finished_outputs_are_skipped_and_foreign_or_broken_ones_redone(seeded_weights, faces, tmp_path):
    parser = FaceParser(seeded_weights, 64, device="cpu")
    outputs = [tmp_path / f"{face.stem}.png" for face in faces]
    assert parse_images(parser, faces, outputs, batch_size=2, workers=0) == len(faces)
    mtimes = [o.stat().st_mtime_ns for o in outputs]
    assert parse_images(parser, faces, outputs, batch_size=2, workers=0) == 0
    assert [o.stat().st_mtime_ns for o in outputs] == mtimes

    write_label(np.zeros((64, 64), np.uint8), outputs[0], provenance="another parser")
    outputs[1].write_bytes(b"not a png")
    assert parse_images(parser, faces, outputs, batch_size=2, workers=0) == 2
    assert read_label(outputs[1]).shape == (64, 64)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_image_stops_with_its_name_and_leaves_no_partial_file(seeded_weights, faces, tmp_path, workers):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    parser = FaceParser(seeded_weights, 64, device="cpu")
    out = tmp_path / "labels"
    with pytest.raises(PipelineError, match=f"{broken}: not a readable image"):
        parse_to(out, parser, [faces[0], broken, faces[1]], batch_size=3, workers=workers)
    assert not (out / "broken.png").exists()
    assert not list(out.glob(".*"))  # no temporary files left


def test_cuda_requested_without_cuda_names_the_key(seeded_weights):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(PipelineError, match="parsing.device"):
        FaceParser(seeded_weights, 64, device="cuda")


# --- weights ------------------------------------------------------------------------------


@pytest.fixture
def file_server(tmp_path):
    """Serves tmp_path/served over HTTP on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def test_download_accepts_the_file_with_the_expected_size_and_sha256(seeded_weights, file_server, tmp_path):
    root, url = file_server
    (root / "parsing_bisenet.pth").write_bytes(seeded_weights.read_bytes())
    target = tmp_path / "weights" / "parsing_bisenet.pth"
    size, sha256 = seeded_weights.stat().st_size, file_digest(seeded_weights, "sha256")
    download_weights(f"{url}/parsing_bisenet.pth", target, size, sha256, QUICK)
    assert file_digest(target, "sha256") == sha256
    model, digest = load_bisenet(target)
    assert isinstance(model, BiSeNet) and digest == sha256


@pytest.mark.parametrize("served", ["seeded", "same_size_garbage"])
def test_download_not_matching_facexlibs_file_is_deleted_and_reported(seeded_weights, file_server, tmp_path, served):
    root, url = file_server
    data = seeded_weights.read_bytes() if served == "seeded" else os.urandom(BISENET_SIZE)
    (root / "parsing_bisenet.pth").write_bytes(data)
    target = tmp_path / "weights" / "parsing_bisenet.pth"
    with pytest.raises(WeightsError) as error:
        download_weights(f"{url}/parsing_bisenet.pth", target, policy=QUICK)  # the real size and sha256
    message = str(error.value)
    assert "\n" not in message and BISENET_SHA256 in message
    assert not target.exists() and not list(target.parent.glob("*"))


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but never listens, so connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_offline_download_names_url_path_and_sha256(tmp_path):
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/parsing_bisenet.pth"
        target = tmp_path / "resources" / "weights" / "parsing_bisenet.pth"
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.parse", "weights", "--url", url, "--out", str(target)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    for expected in (url, str(target), BISENET_SHA256):
        assert expected in errors[0]
    assert not target.exists()


def test_users_own_weights_with_another_hash_are_used_with_a_warning(seeded_weights, caplog):
    with caplog.at_level(logging.WARNING):
        model, digest = load_bisenet(seeded_weights)
    assert digest != BISENET_SHA256
    assert any("not that of facexlib's pretrained BiSeNet" in r.message for r in caplog.records)


def test_weights_that_are_not_a_bisenet_are_refused_naming_the_file(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(WeightsError, match=f"parsing.weights {missing}: no such file"):
        load_bisenet(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match=f"{garbage}: not a loadable PyTorch state dict"):
        load_bisenet(garbage)
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Conv2d(3, 3, 1).state_dict(), other)
    with pytest.raises(WeightsError, match=f"{other}: not facexlib's 19-class BiSeNet"):
        load_bisenet(other)


# --- class table --------------------------------------------------------------------------


def test_class_table_is_in_the_parsers_order():
    assert CLASS_NAMES == (
        "background",
        "skin",
        "l_brow",
        "r_brow",
        "l_eye",
        "r_eye",
        "eye_g",
        "l_ear",
        "r_ear",
        "ear_r",
        "nose",
        "mouth",
        "u_lip",
        "l_lip",
        "neck",
        "neck_l",
        "cloth",
        "hair",
        "hat",
    )


def test_read_label_refuses_images_that_are_not_label_maps(tmp_path):
    from PIL import Image

    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (4, 4)).save(rgb)
    with pytest.raises(PipelineError, match=f"{rgb}: not a label map"):
        read_label(rgb)
    out_of_range = tmp_path / "range.png"
    Image.fromarray(np.full((4, 4), 19, np.uint8), "L").save(out_of_range)
    with pytest.raises(PipelineError, match="class index 19 out of range"):
        read_label(out_of_range)


def test_label_size_resizes_label_maps_by_nearest_neighbour(seeded_weights, faces, tmp_path):
    parser = FaceParser(seeded_weights, 128, device="cpu")
    (full,) = parse_to(tmp_path / "full", parser, faces[:1])
    small = tmp_path / "small" / "x.png"
    assert parse_images(parser, faces[:1], [small], batch_size=1, workers=0, label_size=32) == 1
    expected = read_label(full)[::4, ::4]  # nearest neighbour from 128 to 32 takes every 4th pixel
    np.testing.assert_array_equal(read_label(small), expected)
    assert parse_images(parser, faces[:1], [small], batch_size=1, workers=0, label_size=32) == 0
