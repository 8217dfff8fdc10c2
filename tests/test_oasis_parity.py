"""Parity with OASIS (Sushko et al. 2021; the authors' code in ../shared/reference/oasis, read for
facts only): its own outputs on a seeded case (oasis_fixture.pt, see the reference README),
reproduced by our networks and losses from the same weights and inputs.

The case: its training defaults (3D noise of 64, batch norm, spectral norm, class-balanced N + 1
loss, LabelMix weighted 10), 64x64, 19 classes, generator width 8, batch 2, and a discriminator
built with widths 2, 2, 4, 4, 8, 8 x 8 (its code's multiples of 64, at 8) and its constant 64s.
The generator's noise and LabelMix's coin flips are the fixture's own draws. Tolerance as for
NVlabs: rounding only."""

from __future__ import annotations

import re

import pytest
import torch
from support import shared_root
from test_reference_parity import TOLERANCE

from pipeline.models.discriminator import UNetDiscriminator
from pipeline.models.generator import OASISGenerator
from pipeline.models.loss import labelmix_loss, labelmix_mask, n_plus_one_loss
from pipeline.pairs import one_hot_labels

FIXTURE = shared_root() / "reference" / "oasis_fixture.pt"
pytestmark = pytest.mark.skipif(
    not FIXTURE.exists(), reason=f"{FIXTURE} (OASIS's own outputs) is not beside the checkout"
)


def ours_from_oasis(name: str) -> str:
    """OASIS's state names -> ours. The generator's differ only in its norms' parameter-free part;
    its discriminator's blocks keep their convs in Sequentials whose index depends on the block."""
    name = name.replace(".first_norm.", ".param_free_norm.")
    name = re.sub(r"^body_(down|up)\.(\d+)\.conv1\.\d\.", r"\1.\2.conv_0.", name)
    name = re.sub(r"^body_(down|up)\.(\d+)\.conv2\.1\.", r"\1.\2.conv_1.", name)
    name = re.sub(r"^body_(down|up)\.", r"\1.", name)
    return name.replace("layer_up_last.", "logits.")


@pytest.fixture(scope="module")
def record() -> dict:
    return torch.load(FIXTURE, weights_only=True)["oasis"]


def networks_from_init(record: dict) -> tuple[OASISGenerator, UNetDiscriminator]:
    options = record["options"]
    generator = OASISGenerator(options["semantic_nc"], record["resolution"], options["channels_G"], "batch",
                               options["z_dim"], ())  # fmt: skip
    discriminator = UNetDiscriminator(options["semantic_nc"], ndf=8)
    for part, network in (("G", generator), ("D", discriminator)):
        network.load_state_dict({ours_from_oasis(k): v for k, v in record["init"][part].items()})  # strict: 1:1
    return generator, discriminator


def inputs(record: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-hot label maps and the real images, as OASIS's preprocess_input gives them."""
    return one_hot_labels(record["labels"], torch.device("cpu")), record["image"]


def test_oasis_options_are_its_defaults_and_the_counts_equal_the_authors(record):
    options = record["options"]
    assert (options["param_free_norm"], options["spade_ks"], options["no_spectral_norm"]) == ("syncbatch", 3, False)
    assert (options["num_res_blocks"], options["z_dim"], options["no_3dnoise"]) == (6, 64, False)
    assert (options["no_balancing_inloss"], options["contain_dontcare_label"], options["lambda_labelmix"]) == (
        False, False, 10.0)  # fmt: skip
    generator, discriminator = networks_from_init(record)
    counts = {"G": sum(p.numel() for p in generator.parameters()),
              "D": sum(p.numel() for p in discriminator.parameters())}  # fmt: skip
    assert counts == record["param_counts"] == {"G": 4_940_475, "D": 404_612}


def test_oasis_generator_equals_the_authors_in_train_and_eval_mode(record):
    seg, _ = inputs(record)
    for mode, expected in (("train", record["G_train"]), ("eval", record["G_eval"])):
        generator, _ = networks_from_init(record)
        generator.train(mode == "train")
        with torch.no_grad():
            torch.testing.assert_close(generator(seg, record["z"]), expected, **TOLERANCE, msg=mode)


def test_oasis_generator_draws_its_noise_as_the_authors_do(record):
    """Without z, the generator draws randn(batch, z_dim) from the global RNG, as OASIS's does."""
    seg, _ = inputs(record)
    generator, _ = networks_from_init(record)
    with torch.no_grad():
        torch.manual_seed(5)
        torch.testing.assert_close(generator(seg), record["G_train"], **TOLERANCE)


def test_oasis_discriminator_logits_and_losses_equal_the_authors(record):
    seg, real = inputs(record)
    logits = {}
    for name, image in (("fake", record["G_train"]), ("real", real)):
        _, discriminator = networks_from_init(record)  # from init each time, as the fixture's
        with torch.no_grad():
            logits[name] = discriminator(image)
    torch.testing.assert_close(logits["fake"], record["D_fake"], **TOLERANCE)
    torch.testing.assert_close(logits["real"], record["D_real"], **TOLERANCE)
    losses = {"G_adv": n_plus_one_loss(logits["fake"], seg, real=True),
              "D_fake": n_plus_one_loss(logits["fake"], seg, real=False),
              "D_real": n_plus_one_loss(logits["real"], seg, real=True)}  # fmt: skip
    for name, value in losses.items():
        assert value.item() == pytest.approx(record["loss"][name], rel=1e-5), name


def test_oasis_labelmix_equals_the_authors(record):
    """The mask from the same draws, the discriminator's logits of the mixed image, and the
    weighted LabelMix term."""
    seg, real = inputs(record)
    torch.manual_seed(6)
    mask = labelmix_mask(seg)
    assert torch.equal(mask, record["labelmix_mask"])
    assert 0 < mask.mean() < 1  # both images in the mix
    _, discriminator = networks_from_init(record)
    with torch.no_grad():
        mixed = discriminator(mask * real + (1 - mask) * record["G_train"])
    torch.testing.assert_close(mixed, record["D_mixed"], **TOLERANCE)
    term = record["options"]["lambda_labelmix"] * labelmix_loss(mask, mixed, record["D_fake"], record["D_real"])
    assert term.item() == pytest.approx(record["loss"]["labelmix"], rel=1e-4)
