"""Synthesis (seeded per image, style-guided VAE), the tables' formatting, and the wiring of
the `real` row."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from support import REPO, snakemake

from pipeline.config import ModelConfig, resolve
from pipeline.errors import PipelineError
from pipeline.labelmaps import write_label
from pipeline.models.networks import build
from pipeline.models.trained import load_trained, save_trained
from pipeline.synthesize import synthesize
from pipeline.table import COLUMNS, markdown


def saved_generator(tmp_path, name: str):
    config = resolve({"training": {"resolution": 32}, "models": {name: {"ngf": 8, "ndf": 8}}})
    model = ModelConfig.from_config(config, name)
    torch.manual_seed(0)
    path = tmp_path / f"{name}.pt"
    save_trained(path, model, build(model))
    return path


def label_files(folder, count=3):
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.png"
        write_label(np.kron(rng.integers(0, 19, (4, 4)), np.ones((16, 16))).astype(np.uint8), path, "test")
        paths.append(path)
    return paths


def pixels(path):
    return np.asarray(Image.open(path))


def test_weights_of_another_network_format_are_refused_with_what_to_do(tmp_path):
    path = saved_generator(tmp_path, "spade")
    saved = torch.load(path, weights_only=True)
    del saved["format"]  # as written before formats were recorded
    torch.save(saved, path)
    with pytest.raises(PipelineError, match=r"network format 1, this one reads \d+\); train the model again"):
        load_trained(path, torch.device("cpu"))


@pytest.mark.parametrize("name", ["spade", "spade_vae"])
def test_same_label_map_and_seed_give_the_same_face_whatever_the_batch(tmp_path, name):
    model, networks = load_trained(saved_generator(tmp_path, name), torch.device("cpu"))
    labels = label_files(tmp_path)
    one = [tmp_path / "one" / p.name for p in labels]
    batched = [tmp_path / "batched" / p.name for p in labels]
    synthesize(model, networks, labels, one, torch.device("cpu"), batch_size=1)
    synthesize(model, networks, labels[::-1], batched[::-1], torch.device("cpu"), batch_size=3)
    for a, b in zip(one, batched):
        assert pixels(a).shape == (32, 32, 3)
        np.testing.assert_array_equal(pixels(a), pixels(b))
    if name == "spade_vae":  # random z per image: different images of the same map differ
        assert not np.array_equal(pixels(one[0]), pixels(one[1]))


def test_style_guided_synthesis_uses_the_encoder_and_needs_a_vae(tmp_path):
    labels = label_files(tmp_path, count=1)
    style_a, style_b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (40, 40), (250, 10, 10)).save(style_a)
    Image.new("RGB", (40, 40), (10, 10, 250)).save(style_b)
    weights = saved_generator(tmp_path, "spade_vae")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.synthesize",
            "--weights",
            str(weights),
            "--labels",
            str(labels[0]),
            "--style",
            str(style_a),
            "--out",
            str(tmp_path / "a"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    model, networks = load_trained(weights, torch.device("cpu"))
    synthesize(model, networks, labels, [tmp_path / "b" / "00000.png"], torch.device("cpu"), styles=[style_b])
    assert not np.array_equal(pixels(tmp_path / "a" / "00000.png"), pixels(tmp_path / "b" / "00000.png"))

    plain_model, plain = load_trained(saved_generator(tmp_path, "spade"), torch.device("cpu"))
    with pytest.raises(PipelineError, match="a style image needs a VAE model"):
        synthesize(plain_model, plain, labels, [tmp_path / "c.png"], torch.device("cpu"), styles=[style_a])


def synthesize_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.synthesize", "--device", "cpu", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_vae_z_encode_takes_each_test_images_own_photo_and_prior_ignores_it(tmp_path):
    """metrics.vae_z: `encode` (NVlabs' test protocol) makes a face from the encoding of the same
    image's real photo; `prior` sees only the label map. Two test images share one label map
    and differ in their photos."""
    label = label_files(tmp_path, count=1)[0]
    (tmp_path / "labels").mkdir()
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (40, 40), (250, 10, 10)).save(red)
    Image.new("RGB", (40, 40), (10, 10, 250)).save(blue)
    rows = ""
    for photo in (red, blue):
        (tmp_path / "labels" / photo.name).write_bytes(label.read_bytes())  # label maps are named by image id
        rows += f"{photo.stem},test,{photo},{tmp_path / 'labels' / photo.name}\n"
    manifest = tmp_path / "shard.csv"
    manifest.write_text("image_id,split,path,label\n" + rows)
    weights = saved_generator(tmp_path, "spade_vae")
    for mode in ("prior", "encode"):
        result = synthesize_cli("--weights", weights, "--manifests", manifest, "--vae-z", mode, "--out", tmp_path / mode)
        assert result.returncode == 0, result.stderr
    model, networks = load_trained(weights, torch.device("cpu"))
    # encode is the prior's noise through the encoder's posterior of the image's own photo
    expected = [tmp_path / "expected" / "red.png", tmp_path / "expected" / "blue.png"]
    synthesize(model, networks, [label, label], expected, torch.device("cpu"), styles=[red, blue])
    assert not np.array_equal(pixels(expected[0]), pixels(expected[1]))
    for name in ("red", "blue"):
        np.testing.assert_array_equal(pixels(tmp_path / "encode" / f"{name}.png"), pixels(tmp_path / "expected" / f"{name}.png"))
        assert not np.array_equal(pixels(tmp_path / "encode" / f"{name}.png"), pixels(tmp_path / "prior" / f"{name}.png"))

    refused = synthesize_cli("--weights", weights, "--labels", label, "--vae-z", "encode", "--out", tmp_path / "x")
    assert refused.returncode == 2 and "--vae-z encode takes each test image's photo from --manifests" in refused.stderr


def row(name: str, **values) -> dict:
    base = {
        "model": name,
        "settings": "spade",
        "pixel_accuracy": 0.9,
        "pixel_accuracy_low": 0.85,
        "pixel_accuracy_high": 0.95,
        "mIoU": 0.5,
        "mIoU_low": 0.45,
        "mIoU_high": 0.55,
        "FID": 31.25,
        "FID_unstable": False,
        "KID": 0.0123,
        "KID_std": 0.001,
        "n_test": 2000,
        "resolution": 256,
        "iterations": 50000,
        "train_hours": 12.5,
        "health": "",
        "vae_z": None,
        "per_class_iou": {},
    }
    return {**base, **values}


def test_markdown_table_in_the_papers_style():
    text = markdown([row("spade"), row("real", settings="", iterations=None, train_hours=None, FID_unstable=True)])
    lines = text.splitlines()
    assert lines[0].startswith("| Method | settings | pixel accuracy (%) ↑ | mIoU (%) ↑ | FID ↓")
    assert lines[2] == (
        "| spade | spade | 90.0 [85.0, 95.0] | 50.0 [45.0, 55.0] | 31.2 | 1.23 ± 0.10 | 2000 | 256 | 50000 |"
    )
    assert lines[3].startswith("| real |  | 90.0") and lines[3].endswith("| 256 |  |") and "31.2*" in lines[3]
    assert any(line.startswith("*: fewer images") for line in lines)
    assert not any(line.startswith("KID ±") for line in lines)


def test_kid_without_a_spread_prints_no_plus_minus_and_says_why():
    lines = markdown([row("spade", KID_std=None)]).splitlines()
    assert lines[2].split(" | ")[5] == "1.23"
    assert any(line.startswith("KID ± is its std over random subsets") for line in lines)


def test_the_table_names_where_a_vae_rows_z_came_from():
    prior = markdown([row("spade_vae", vae_z="prior"), row("spade")]).splitlines()
    assert prior[2].startswith("| spade_vae (z from the prior) |") and prior[3].startswith("| spade |")
    assert not any("not comparable" in line for line in prior)
    encoded = markdown([row("spade_vae", vae_z="encode")]).splitlines()
    assert encoded[2].startswith("| spade_vae (z encoded from the real test photo) |")
    assert any("not comparable" in line for line in encoded)


def test_a_row_flags_a_run_that_ended_with_signs_of_failure():
    lines = markdown([row("pix2pixhd", health="D_wins+same_output"), row("spade")]).splitlines()
    assert lines[2].startswith("| pix2pixhd ⚠ |") and lines[3].startswith("| spade |")
    warning = next(line for line in lines if line.startswith("⚠ pix2pixhd:"))
    assert "rejects every fake" in warning and "nearly identical" in warning
    assert not any(line.startswith("⚠ spade") for line in lines)


def test_published_figures_go_under_the_table_apart_from_the_measured_rows():
    """config.yaml's figures for the default models, as the table rule passes them."""
    from pipeline.config import load
    from pipeline.table import published_section

    config = load()
    published = {model: config["models"][model].get("published", []) for model in config["compare"]}
    lines = published_section(published).splitlines()
    assert lines[1] == "### Published figures (context, not targets)"
    body = [line for line in lines if line.startswith("| ")][2:]  # after the header and its rule
    assert "| spade | Zhang, Li & Zhou n.d. | FFHQ (10,000 faces), CelebAMask-HQ's parser | 91.39 | 72.13 |  |" in (
        "\n".join(body)
    )
    assert "| spade_unpool | Gorrepati & Lau n.d., novel gen. | ADE20K | 79.5 | 38.2 |  |" in "\n".join(body)
    assert "| pix2pixhd | Park et al. 2019, table 1 | ADE20K | 69.2 | 20.3 | 81.8 |" in "\n".join(body)
    assert {line.split(" | ")[0][2:] for line in body} == {"spade", "spade_switchnorm_inln", "spade_unpool", "pix2pixhd"}
    assert published_section({"spade": []}) == ""  # nothing published: no section


def test_the_table_has_every_column_a_reader_needs():
    for column in (
        "model",
        "settings",
        "health",
        "pixel_accuracy",
        "mIoU",
        "FID",
        "KID",
        "n_test",
        "resolution",
        "iterations",
        "train_hours",
        "pixel_accuracy_low",
        "mIoU_high",
    ):
        assert column in COLUMNS


def test_real_row_compares_real_train_with_real_test_and_models_their_syntheses(tmp_path):
    def dry_run(target: str) -> str:
        result = snakemake(target, "-n", "--printshellcmds", "--configfile", "run.yaml", cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    (tmp_path / "run.yaml").write_text("training: {resolution: 64}\nparsing: {shard_size: 2}\n")
    (tmp_path / "results/data").mkdir(parents=True)  # an existing split, so the checkpoint resolves
    splits = ["train", "test", "train", "test", "test"]
    with open(tmp_path / "results/data/split.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image_id", "split", "path"], *([i, s, f"{i}.png"] for i, s in enumerate(splits))])
    plan = dry_run("results/metrics/real.json")
    real = next(line for line in plan.splitlines() if "pipeline.evaluate row" in line)
    # 5 images parse in 3 shards of 2; the 3 test images are re-segmented in 2 shards.
    assert "--manifests results/labels/shards/0.csv results/labels/shards/1.csv results/labels/shards/2.csv " in plan
    assert "--images results/real/64/train" in real
    assert "--predictions results/resegment/real/0 results/resegment/real/1 " in real
    assert "--shard 1 --out-dir results/resegment/real/1 " in plan
    assert "--truth results/real/64/truth" in real and "--weights" not in real
    spade = next(line for line in dry_run("results/metrics/spade.json").splitlines() if "evaluate row" in line)
    assert "--images results/synth/spade" in spade and "--weights results/models/spade/generator.pt" in spade
    assert "--truth results/real/64/truth" in spade
