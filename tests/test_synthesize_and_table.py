"""Synthesis (seeded per image, style-guided VAE), the tables' formatting, and the wiring of
the `real` row."""

from __future__ import annotations

import csv
import json
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
from pipeline.synthesize import seeded_noise, synthesize
from pipeline.table import COLUMNS, markdown


def saved_generator(tmp_path, name: str, resolution: int = 32):
    config = resolve({"training": {"resolution": resolution}, "models": {name: {"ngf": 8, "ndf": 8}},
                      "compare": [name]})  # fmt: skip
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


@pytest.mark.parametrize("name, resolution", [("spade", 32), ("spade_vae", 32), ("clade_icpe", 32), ("oasis", 64)])
def test_same_label_map_and_seed_give_the_same_face_whatever_the_batch(tmp_path, name, resolution):
    """Models that draw noise (a VAE's prior, OASIS's) draw it per image, seeded by its id."""
    model, networks = load_trained(saved_generator(tmp_path, name, resolution), torch.device("cpu"))
    labels = label_files(tmp_path)
    one = [tmp_path / "one" / p.name for p in labels]
    batched = [tmp_path / "batched" / p.name for p in labels]
    synthesize(model, networks, labels, one, torch.device("cpu"), batch_size=1)
    synthesize(model, networks, labels[::-1], batched[::-1], torch.device("cpu"), batch_size=3)
    for a, b in zip(one, batched):
        assert pixels(a).shape == (resolution, resolution, 3)
        np.testing.assert_array_equal(pixels(a), pixels(b))
    if model.draws_noise:  # its own noise per image: another image id, another face
        assert not np.array_equal(pixels(one[0]), pixels(one[1]))


@pytest.mark.parametrize("device", ["meta", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_seeded_noise_is_the_cpus_draw_on_every_device(device):
    """The same (seed, image) gives the same face on a GPU as on the CPU: the noise is drawn by a
    CPU generator and moved. (The meta device has no generator of its own: a draw there fails.)"""
    on_cpu = seeded_noise(16, 7, ["00001", "00002"], torch.device("cpu"))
    moved = seeded_noise(16, 7, ["00001", "00002"], torch.device(device))
    assert moved.device.type == device and moved.shape == (2, 16)
    if device != "meta":
        assert torch.equal(moved.cpu(), on_cpu)
    assert not torch.equal(on_cpu[0], on_cpu[1])


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
        "replicates": 1,
        "interval_over": "test images",
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


def table_lines(rows: list[dict]) -> list[str]:
    """table.md's lines from the table's header on (the protocol lines come before it)."""
    lines = markdown(rows, ["- the protocol"]).splitlines()
    assert lines[:3] == ["### Protocol", "", "- the protocol"]
    return lines[next(i for i, line in enumerate(lines) if line.startswith("| Method")):]


def test_markdown_table_in_the_papers_style():
    lines = table_lines([row("spade"), row("real", settings="", iterations=None, train_hours=None, FID_unstable=True)])
    assert lines[0].startswith("| Method | settings | runs | pixel accuracy (%) ↑ | mIoU (%) ↑ | FID ↓")
    assert lines[2] == (
        "| spade | spade | 1† | 90.0 [85.0, 95.0] | 50.0 [45.0, 55.0] | 31.2 | 1.23 ± 0.10 | 2000 | 256 | 50000 |"
    )
    assert lines[3].startswith("| real |  | 1 | 90.0") and lines[3].endswith("| 256 |  |") and "31.2*" in lines[3]
    assert any(line.startswith("*: fewer images") for line in lines)
    assert any(line.startswith("†: fewer than 3 runs") for line in lines)
    assert any(line.startswith("KID of one run: ± its std over random subsets") for line in lines)


def test_a_row_over_several_runs_shows_their_sd_and_the_interval_over_runs():
    spread = {"replicates": 5, "interval_over": "runs and test images", "pixel_accuracy_sd": 0.02,
              "mIoU_sd": 0.03, "FID_sd": 2.5, "FID_low": 28.0, "FID_high": 35.0, "KID_sd": 0.002,
              "KID_low": 0.01, "KID_high": 0.015, "KID_std": None}
    lines = table_lines([row("spade", **spread), row("real", replicates=1, settings="", iterations=None)])
    assert lines[2] == (
        "| spade | spade | 5 | 90.0 ± 2.0 [85.0, 95.0] | 50.0 ± 3.0 [45.0, 55.0] | 31.2 ± 2.5 [28.0, 35.0] | "
        "1.23 ± 0.20 [1.00, 1.50] | 2000 | 256 | 50000 |"
    )
    assert not any(line.startswith("†") for line in lines)


def test_kid_without_a_spread_prints_no_plus_minus_and_says_why():
    lines = table_lines([row("spade", KID_std=None)])
    assert lines[2].split(" | ")[6] == "1.23"
    assert any(line.startswith("KID of one run has no ± where neither image set") for line in lines)


def test_the_table_names_where_a_vae_rows_z_came_from():
    prior = table_lines([row("spade_vae", vae_z="prior"), row("spade")])
    assert prior[2].startswith("| spade_vae (z from the prior) |") and prior[3].startswith("| spade |")
    assert not any("not comparable" in line for line in prior)
    encoded = table_lines([row("spade_vae", vae_z="encode")])
    assert encoded[2].startswith("| spade_vae (z encoded from the real test photo) |")
    assert any("not comparable" in line for line in encoded)


def test_a_row_flags_a_run_that_ended_with_signs_of_failure():
    lines = table_lines([row("pix2pixhd", health="D_wins+same_output"), row("spade")])
    assert lines[2].startswith("| pix2pixhd ⚠ |") and lines[3].startswith("| spade |")
    warning = next(line for line in lines if line.startswith("⚠ pix2pixhd:"))
    assert "rejects every fake" in warning and "nearly identical" in warning
    assert not any(line.startswith("⚠ spade") for line in lines)


# Our rows' protocol fields in the published-figure tests.
OURS = {"dataset": "CelebAMask-HQ", "split": "index", "reference": "test", "fid_dims": 2048, "resolution": 256,
        "images": 2000, "segmenter": "facexlib BiSeNet"}


def run_protocol(**fields):
    """A run's protocol whose rows (at row()'s resolution and image count) have OURS's fields."""
    from pipeline.protocol import Protocol

    base = {"dataset": OURS["dataset"], "split": OURS["split"], "train_images": 28000, "test_images": 2000,
            "label_source": "masks", "segmenter": OURS["segmenter"], "segmenter_sha256": "0" * 64,
            "parsing_size": 512, "reference": OURS["reference"], "fid_dims": OURS["fid_dims"]}
    return Protocol(**{**base, **fields})


def published_lines(published: dict, models=("spade",), protocol=None) -> list[str]:
    from pipeline.table import published_section

    return published_section(published, [row(model) for model in models], protocol or run_protocol()).splitlines()


def test_config_yamls_published_figures_stand_apart_from_an_ffhq_row():
    """config.yaml's figures for the default models, as the table rule passes them: none was
    measured under an FFHQ run's protocol."""
    from pipeline.config import load
    from pipeline.table import published_section

    config = load()
    published = {model: config["models"][model].get("published", []) for model in config["compare"]}
    ffhq = run_protocol(dataset="FFHQ", split="seeded, test fraction 0.2")
    lines = published_section(published, [row(m) for m in config["compare"]], ffhq)
    lines = lines.splitlines()
    assert lines[1] == "### Published figures under another protocol (context, not targets)"
    body = "\n".join(line for line in lines if line.startswith("| "))
    assert "| pix2pixhd | Park et al. 2019, table 1 | ADE20K | 69.2 | 20.3 | 81.8 |  | dataset ADE20K (here FFHQ)" in body
    assert "| spade_unpool | Gorrepati & Lau n.d., novel gen. | ADE20K | 79.5 | 38.2 |  |  |" in body
    assert "under this protocol" not in "\n".join(lines)
    assert published_section({"spade": []}, [row("spade")], run_protocol()) == ""  # nothing published


@pytest.mark.parametrize("field", ["dataset", "split", "reference", "fid_dims", "resolution", "images", "segmenter"])
def test_a_published_figure_stands_beside_a_row_only_under_its_metrics_protocol(field):
    """Each protocol field changed in turn: FID and KID need all but the segmenter to match,
    accuracy and mIoU all of them; a figure that does not match is listed apart, naming why."""
    figures = {"pixel_accuracy": 0.95, "mIoU": 0.75, "FID": 40.0, "KID": 0.02}
    other = {"fid_dims": 64, "resolution": 512, "images": 500}.get(field, "something else")
    lines = published_lines({"spade": [{"paper": "P", **OURS, field: other, **figures}]})
    text = "\n".join(lines)
    beside = text.partition("under another protocol")[0]
    fid_matches = field == "segmenter"
    for metric in ("FID", "KID ×100"):
        assert (f"| spade | P | {metric} |" in beside) == fid_matches, metric
    for metric in ("pixel accuracy (%)", "mIoU (%)"):
        assert f"| spade | P | {metric} |" not in beside
    apart = text.partition("under another protocol")[2]
    assert f"{field} {other} (here {OURS[field]})" in apart
    cells = next(line for line in apart.splitlines() if line.startswith("| spade | P |")).split(" | ")
    assert cells[3:7] == (["95", "75", "", ""] if fid_matches else ["95", "75", "40", "2"])


def test_a_published_figure_under_this_protocol_stands_beside_ours_and_a_missing_field_never_matches():
    lines = published_lines({"spade": [{"paper": "Q", **OURS, "mIoU": 0.75, "FID": 40.0}]})
    assert "| spade | Q | mIoU (%) | 75 | 50.0 |" in lines and "| spade | Q | FID | 40 | 31.2 |" in lines
    assert not any("another protocol" in line for line in lines)
    unstated = {key: value for key, value in OURS.items() if key != "images"}
    lines = published_lines({"spade": [{"paper": "R", **unstated, "FID": 40.0}]})
    assert not any(line.startswith("| spade | R | FID") for line in lines)
    assert any("images not stated" in line for line in lines)
    # A published FID is pool3's unless its entry says otherwise.
    pool3 = {key: value for key, value in OURS.items() if key != "fid_dims"}
    assert "| spade | S | FID | 40 | 31.2 |" in published_lines({"spade": [{"paper": "S", **pool3, "FID": 40.0}]})
    block0 = published_lines({"spade": [{"paper": "T", **OURS, "FID": 40.0}]}, protocol=run_protocol(fid_dims=64))
    assert not any(line.startswith("| spade | T | FID") for line in block0)
    assert any("fid_dims 2048 (here 64)" in line for line in block0)


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


@pytest.mark.parametrize("made", [[], ["--weights", "generator.pt"]])
def test_an_evaluate_row_call_must_say_how_the_row_was_made(tmp_path, made):
    command = [sys.executable, "-m", "pipeline.evaluate", "row", "--name", "spade", "--truth", "t", "--predictions",
               "p", "--images", "i", "--real-stats", "s.npz", *made, "--metrics-json", "{}", "--out", "o.json",
               "--confusions", "o.npz"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "give --weights and --train-log" in result.stderr.splitlines()[-1]


def test_reference_statistics_of_other_features_are_one_line_naming_the_file(tmp_path):
    """metrics.fid_dims changed by hand around Snakemake (which would recompute the statistics)."""
    from pipeline.fid import Statistics

    Statistics.of(np.random.default_rng(0).normal(size=(4, 2048))).save(tmp_path / "s.npz")
    metrics = json.dumps({"fid_dims": 64, "device": "cpu"})
    command = [sys.executable, "-m", "pipeline.evaluate", "row", "--name", "real", "--truth", "t", "--predictions",
               "p", "--images", "i", "--real-stats", str(tmp_path / "s.npz"), "--resolution", "64",
               "--metrics-json", metrics, "--out", "o.json", "--confusions", "o.npz"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"{tmp_path / 's.npz'}: 2048 Inception features, metrics.fid_dims is 64: delete it to compute it again"
    )
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("reference, real_row_images", [("test", "train"), ("train", "test")])
def test_the_fid_reference_decides_the_statistics_and_the_real_rows_images(reference, real_row_images):
    from pipeline.layout import Results

    results = Results()
    assert results.real_stats(64, reference) == f"results/real/64/{reference}_stats.npz"
    assert results.fid_images("real", 64, reference) == f"results/real/64/{real_row_images}"
    assert results.fid_images("spade", 64, reference) == "results/synth/spade"
