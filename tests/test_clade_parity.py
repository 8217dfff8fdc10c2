"""Parity with CLADE (Tan et al. 2021; the authors' code in ../shared/reference/clade, an NVlabs/SPADE
fork): its own outputs on seeded cases (clade_fixture.pt, see the reference README), reproduced by
our `clade` generator and our training step from the same weights and inputs.

Cases: `clade` (class-adaptive norms) and `clade_dist` (with its intra-class positional encoding,
whose distance map the fixture gives as a seeded input), 64x64, ngf = ndf = 8, batch 2, VGG off.
The discriminator and the loss are SPADE's (its NVlabs parity is tests/test_reference_parity.py);
what is CLADE's own: the generator's outputs in train and eval mode, its parameter count, and one
training iteration's losses and weights. Tolerance as for NVlabs: rounding only."""

from __future__ import annotations

import importlib.util
import re
import sys
import types

import numpy as np
import pytest
import torch
from support import shared_root
from test_reference_parity import LOSS_NAMES, TOLERANCE, assert_weights_after_step, ours, reference_after_step

from pipeline.config import ModelConfig, resolve
from pipeline.data.procedural import procedural_face
from pipeline.distributed import World
from pipeline.labelmaps import FLIPPED_CLASS
from pipeline.models import generator
from pipeline.models.networks import Networks, build
from pipeline.models.objective import SPADEObjective, discriminate
from pipeline.pairs import one_hot_labels
from pipeline.positions import distance_map
from pipeline.train import make_optimizers, train_step

REFERENCE = shared_root() / "reference"
FIXTURE = REFERENCE / "clade_fixture.pt"
pytestmark = pytest.mark.skipif(
    not FIXTURE.exists(), reason=f"{FIXTURE} (CLADE's own outputs) is not beside the checkout"
)
CASES = ["clade", "clade_dist"]


def ours_from_clade(name: str) -> str:
    """CLADE's names are NVlabs' but for its norm's affine part."""
    return ours(re.sub(r"\.class_specified_affine\.", ".class_affine.", name))


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def networks_from_init(record: dict) -> tuple[ModelConfig, Networks]:
    options = record["options"]
    settings = {"generator": "clade", "ngf": options["ngf"], "ndf": options["ndf"],
                "positional_encoding": options["add_dist"]}  # fmt: skip
    config = resolve({"training": {"resolution": record["resolution"], "vgg": False}, "models": {"clade": settings}})
    model = ModelConfig.from_config(config, "clade")
    networks = build(model)
    for part, network in (("G", networks.generator), ("D", networks.discriminator)):
        network.load_state_dict({ours_from_clade(k): v for k, v in record["init"][part].items()})  # strict: 1:1
    return model, networks


def test_clade_options_are_our_defaults(fixture):
    record = fixture["clade"]
    model, networks = networks_from_init(record)
    options = record["options"]
    assert (options["norm_mode"], options["norm_G"], model.norm) == ("clade", "spectralspadebatch3x3", "batch")
    settings, keys = (model.num_D, model.n_layers_D, model.training.lambda_feat), ("num_D", "n_layers_D", "lambda_feat")
    assert settings == tuple(options[key] for key in keys)
    for optimizer, role in zip(make_optimizers(networks, model.training, fused=False), ("G", "D")):
        group = optimizer.param_groups[0]
        assert (group["lr"], group["betas"]) == (record["step1"]["lr"][role], tuple(record["step1"]["betas"]))


@pytest.mark.parametrize("name", CASES)
def test_clade_parameter_counts(fixture, name):
    _, networks = networks_from_init(fixture[name])
    counts = fixture[name]["param_counts"]
    assert sum(p.numel() for p in networks.generator.parameters()) == counts["G"]
    assert sum(p.numel() for p in networks.discriminator.parameters()) == counts["D"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_clade_generator_output(fixture, name, mode):
    record = fixture[name]
    _, networks = networks_from_init(record)
    with torch.no_grad():
        seg = one_hot_labels(record["labels"], torch.device("cpu"))
        fake = networks.generator.train(mode == "train")(seg, None, record["dist"])
    torch.testing.assert_close(fake, record[f"G_{mode}"], **TOLERANCE)


def test_clade_discriminator_features(fixture):
    """SPADE's discriminator, on the label map and the image: never on the distance map (its first
    conv takes 19 + 3 channels, so a training step that gave it more would fail)."""
    record = fixture["clade_dist"]
    _, networks = networks_from_init(record)
    seg = one_hot_labels(record["labels"], torch.device("cpu"))
    pairs = torch.cat([torch.cat([seg, record["G_train"]], 1), torch.cat([seg, record["image"]], 1)], 0)
    with torch.no_grad():
        scales = networks.discriminator(pairs)
    for scale, reference in zip(scales, record["D_train"]):
        for feature, expected in zip(scale, reference):
            torch.testing.assert_close(feature, expected, **TOLERANCE)


@pytest.fixture(scope="module")
def clade_after_step(tmp_path_factory) -> dict:
    """CLADE's G and D after its own trainer's iteration (CLADE's trainer being NVlabs')."""
    return reference_after_step(REFERENCE / "clade", FIXTURE, tmp_path_factory.mktemp("clade") / "after_step.pt")


@pytest.mark.parametrize("name", CASES)
def test_clade_one_training_iteration(fixture, clade_after_step, name, monkeypatch):
    """Our train_step from CLADE's initial weights on its inputs: the losses against the fixture's
    and every tensor of G and D after both updates against CLADE's own trainer on this CPU. With
    the positional encoding, G takes the fixture's seeded distance map for its label maps'."""
    record = fixture[name]
    monkeypatch.setattr(generator, "distance_maps", lambda labels: record["dist"])
    model, networks = networks_from_init(record)
    seg, real = one_hot_labels(record["labels"], torch.device("cpu")), record["image"]
    with torch.no_grad():  # the fixture's D forward after init advanced its spectral norms once
        discriminate(networks.discriminator, seg, record["G_train"], real)
    opt_G, opt_D = make_optimizers(networks, model.training, fused=True)
    torch.manual_seed(2)
    objective = SPADEObjective.create(model, networks, torch.device("cpu"), World())
    losses, _ = train_step(objective, opt_G, opt_D, seg, real)
    measured = dict(zip(SPADEObjective.LOSSES, losses.tolist()))
    for clade_name, value in {**record["step1"]["G_losses"], **record["step1"]["D_losses"]}.items():
        assert measured[LOSS_NAMES[clade_name]] == pytest.approx(value, rel=1e-5, abs=1e-6), clade_name
    assert_weights_after_step(networks, clade_after_step[name], rename=ours_from_clade)


def test_clade_generator_encodes_the_distance_map_of_its_own_label_map(fixture):
    """Given no distance map, the generator computes that of the label map it is given (training,
    synthesis and the editor give it none)."""
    record = fixture["clade_dist"]
    _, networks = networks_from_init(record)
    seg = one_hot_labels(record["labels"], torch.device("cpu"))
    own = torch.from_numpy(np.stack([distance_map(labels) for labels in record["labels"].numpy()]))
    generator = networks.generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(generator(seg), generator(seg, None, own), rtol=0, atol=0)
        assert not torch.allclose(generator(seg), generator(seg, None, torch.zeros_like(own)))


def test_clade_distance_map_is_cal_dist_masks(monkeypatch):
    """pipeline.positions against CLADE's own util/cal_dist_masks.py (OpenCV's 8-connected
    components), on blocky label maps with specks (one-pixel regions) and a class split in parts."""
    for name in ("matplotlib", "matplotlib.pyplot"):  # imported there to show maps, never used here
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    spec = importlib.util.spec_from_file_location("cal_dist_masks", REFERENCE / "clade" / "util" / "cal_dist_masks.py")
    theirs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theirs)
    rng = np.random.default_rng(0)
    for _ in range(4):
        labels = rng.integers(0, 6, (8, 8)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
        labels[rng.random(labels.shape) < 0.02] = 3
        rows, cols = theirs.cal_connectedComponents(labels)
        np.testing.assert_allclose(distance_map(labels), np.stack([rows, cols]), rtol=0, atol=1e-6)


def test_clade_distance_map_of_a_mirrored_face_is_the_mirrored_map():
    """Training flips a face and swaps its left/right classes; the map, computed from what the
    generator sees, is then the mirror of the unflipped one with its column offsets negated (CLADE's
    data code flips its stored map along the rows instead)."""
    labels = procedural_face(3, 64)[1]
    mirrored = FLIPPED_CLASS[labels][:, ::-1]
    expected = distance_map(labels)[:, :, ::-1] * np.array([1, -1], dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(distance_map(mirrored), expected, atol=1e-6)
