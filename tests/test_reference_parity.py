"""Parity with NVlabs/SPADE: its own outputs on two seeded cases (../shared/reference, see its
README), reproduced by our networks and our training step from the same weights and inputs.

Cases: `spade` (64x64) and `spade_vae` (256x256), ngf = ndf = 8, batch 2, VGG loss off. What is
compared: G in train and eval mode, every feature of every discriminator scale, E's mu and
logvar, and one full iteration (G step, then D step on a regenerated fake): its losses against
the fixture's, and the weights after it against NVlabs' own trainer run on this CPU
(tests/nvlabs_step.py: the fixture's digests of those weights hold only on the CPU that made it).

The VGG perceptual loss (off in the fixture: no ImageNet weights offline) is compared with
NVlabs' VGGLoss, loaded from its file, on the same seeded VGG19 weights.

Tolerance: fp32 on the CPU with the same operations in the same order, so the only differences
are rounding (convolution kernels may sum in another order on another CPU): relative and
absolute 1e-5 for outputs, features, losses and the weights after the step, about 100 float32
ulps at these magnitudes. Every defect tried while writing this test (a stride, the
power-iteration order, batch-norm momentum, Adam's eps, the D step reusing G's fake, a leaky-ReLU
slope) failed it by far more.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torchvision
from support import shared_root

from pipeline.config import ModelConfig, resolve
from pipeline.distributed import World
from pipeline.models.loss import VGGLoss
from pipeline.models.networks import Networks, build
from pipeline.models.objective import SPADEObjective, discriminate
from pipeline.pairs import one_hot_labels
from pipeline.train import make_optimizers, train_step

REFERENCE = shared_root() / "reference"
FIXTURE = REFERENCE / "nvlabs_spade_fixture.pt"
pytestmark = pytest.mark.skipif(
    not FIXTURE.exists(), reason=f"{FIXTURE} (NVlabs' own outputs) is not beside the checkout"
)

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
# A gradient above 0 and below this fraction of its tensor's largest may be 0 but for rounding
# (measured: the weights that differ from NVlabs' after the step have gradients below 5e-5 of
# their tensor's largest); at most this share of a network's weights may be so.
NOISE_GRADIENT = 1e-4
NOISE_SHARE = 0.01

# NVlabs parameter names -> ours. Names not matched here are the same in both (the whole
# generator: fc, head_0, G_middle_*, up_*, conv_img, each block's conv_*/norm_* with SPADE's
# mlp_shared/mlp_gamma/mlp_beta; spectral norm as weight_orig, weight_u, weight_v in both).
NVLABS_TO_OURS = (
    # D: discriminator_{scale}.model{stage}; its middle stages wrap (conv, norm) in one more Sequential.
    (r"^discriminator_(\d+)\.model(\d+)\.0\.(?:0\.)?", r"scales.\1.stages.\2.0."),
    # E: layer1..layer6 -> layers.0..layers.5.
    (r"^layer(\d+)\.", lambda match: f"layers.{int(match[1]) - 1}."),
)
# NVlabs' loss names -> the positions in our step's LOSSES.
LOSS_NAMES = {"GAN": "G_gan", "GAN_Feat": "G_feat", "KLD": "G_kld", "D_real": "D_real", "D_Fake": "D_fake"}


def ours(name: str) -> str:
    for pattern, replacement in NVLABS_TO_OURS:
        name = re.sub(pattern, replacement, name)
    return name


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def networks_from_init(
    record: dict, name: str, memory_format: torch.memory_format = torch.contiguous_format
) -> tuple[ModelConfig, Networks]:
    """Our networks built from our config for the case, holding NVlabs' initial weights, in the
    given memory format (training uses channels_last by default)."""
    widths = {"ngf": record["options"]["ngf"], "ndf": record["options"]["ndf"]}
    config = resolve({"training": {"resolution": record["resolution"], "vgg": False}, "models": {name: widths}})
    model = ModelConfig.from_config(config, name)
    networks = build(model)
    for part, network in (("G", networks.generator), ("D", networks.discriminator), ("E", networks.encoder)):
        if network is not None:
            network.load_state_dict({ours(k): v for k, v in record["init"][part].items()})  # strict: 1:1
            network.to(memory_format=memory_format)
    return model, networks


def inputs(
    record: dict, memory_format: torch.memory_format = torch.contiguous_format
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    seg = one_hot_labels(record["labels"], torch.device("cpu")).contiguous(memory_format=memory_format)
    return seg, record["image"].contiguous(memory_format=memory_format), record["z"] if "encoder" in record else None


CASES = ["spade", "spade_vae"]
FORMATS = pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])


@pytest.mark.parametrize("name", CASES)
def test_nvlabs_options_are_our_defaults(fixture, name):
    """The fixture was made with NVlabs' defaults; ours must be the same settings, and our
    optimisers must be built from them as NVlabs' are (Adam with torch's default eps)."""
    record = fixture[name]
    model, networks = networks_from_init(record, name)
    options, cfg = record["options"], model.training
    assert (model.norm, model.vae, model.num_upsampling_layers) == ("batch", options["use_vae"], options["num_upsampling_layers"])
    assert (model.num_D, model.n_layers_D, model.z_dim) == (options["num_D"], options["n_layers_D"], options["z_dim"])
    assert (cfg.lambda_feat, cfg.lambda_kld) == (options["lambda_feat"], options["lambda_kld"])
    opt_G, opt_D = make_optimizers(networks, cfg, fused=False)
    for optimizer, role in ((opt_G, "G"), (opt_D, "D")):
        group = optimizer.param_groups[0]
        assert type(optimizer) is torch.optim.Adam
        assert (group["lr"], group["betas"], group["eps"]) == (record["step1"]["lr"][role], tuple(record["step1"]["betas"]), 1e-8)


@pytest.mark.parametrize("name", CASES)
def test_nvlabs_parameter_counts(fixture, name):
    _, networks = networks_from_init(fixture[name], name)
    counts = fixture[name]["param_counts"]
    assert sum(p.numel() for p in networks.generator.parameters()) == counts["G"]
    assert sum(p.numel() for p in networks.discriminator.parameters()) == counts["D"]
    if networks.encoder is not None:
        assert sum(p.numel() for p in networks.encoder.parameters()) == counts["E"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
@FORMATS
def test_nvlabs_generator_output(fixture, name, mode, memory_format):
    """Train mode: batch norm on batch statistics and one spectral-norm power iteration per
    forward, in NVlabs' order; eval mode: running statistics and the stored u, v."""
    record = fixture[name]
    _, networks = networks_from_init(record, name, memory_format)
    seg, _, z = inputs(record, memory_format)
    with torch.no_grad():
        fake = networks.generator.train(mode == "train")(seg, z)
    torch.testing.assert_close(fake, record[f"G_{mode}"], **TOLERANCE)


@pytest.mark.parametrize("name", CASES)
@FORMATS
def test_nvlabs_discriminator_features_of_every_scale(fixture, name, memory_format):
    """The fakes, then the reals, on the batch axis, as NVlabs scores them in one pass. The
    shapes show the strides (the last middle conv has stride 1)."""
    record = fixture[name]
    _, networks = networks_from_init(record, name, memory_format)
    seg, real, _ = inputs(record, memory_format)
    pairs = torch.cat([torch.cat([seg, record["G_train"]], 1), torch.cat([seg, real], 1)], 0)
    with torch.no_grad():
        scales = networks.discriminator(pairs)
    assert [[f.shape for f in scale] for scale in scales] == [[f.shape for f in scale] for scale in record["D_train"]]
    for scale, reference in zip(scales, record["D_train"]):
        for feature, expected in zip(scale, reference):
            torch.testing.assert_close(feature, expected, **TOLERANCE)


def test_nvlabs_encoder_mu_and_logvar(fixture):
    record = fixture["spade_vae"]
    _, networks = networks_from_init(record, "spade_vae")
    with torch.no_grad():
        mu, logvar = networks.encoder(record["image"])
    torch.testing.assert_close(mu, record["encoder"]["mu"], **TOLERANCE)
    torch.testing.assert_close(logvar, record["encoder"]["logvar"], **TOLERANCE)


def reference_after_step(code: Path, fixture: Path, out: Path, driver: str = "nvlabs_step.py") -> dict:
    """Every tensor of the reference's networks after its own trainer's iteration on each case
    of `fixture`, run here by `driver` (tests/nvlabs_step.py: NVlabs' or CLADE's G, D and E) from
    the reference's `code`, by case."""
    script = Path(__file__).with_name(driver)
    # With this process's threads: other threads sum the convolutions' gradients in another order.
    command = [sys.executable, str(script), str(code), str(fixture), str(out), str(torch.get_num_threads())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def nvlabs_after_step(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("nvlabs") / "after_step.pt"
    return reference_after_step(REFERENCE / "nvlabs-spade", FIXTURE, out)


@pytest.mark.parametrize("name", CASES)
@FORMATS
def test_nvlabs_one_training_iteration(fixture, nvlabs_after_step, name, memory_format):
    """Our train_step from NVlabs' initial weights on its inputs: the G losses (hinge GAN,
    feature matching, KLD) and the D losses against the fixture's, and every tensor of G, D and E
    after both updates against NVlabs' own trainer on this CPU (the fixture's digests of them hold
    only on the CPU that made it: see tests/nvlabs_step.py). The VAE case draws its noise from
    torch's global RNG, seeded 2 as the fixture did; our step draws it in the same order.
    In channels_last (the training default) the losses are compared; the weights in NCHW."""
    record = fixture[name]
    model, networks = networks_from_init(record, name, memory_format)
    seg, real, _ = inputs(record, memory_format)
    # The fixture's step started where its recording left D and E: each had run one forward in
    # train mode since init (for D_train and mu/logvar), which advanced their spectral norms'
    # u and v once; G was reset to init. Replay those forwards.
    with torch.no_grad():
        discriminate(networks.discriminator, seg, record["G_train"], real)
        if networks.encoder is not None:
            networks.encoder(real)
    opt_G, opt_D = make_optimizers(networks, model.training, fused=True)
    torch.manual_seed(2)
    objective = SPADEObjective.create(model, networks, torch.device("cpu"), World())
    losses, _ = train_step(objective, opt_G, opt_D, seg, real)

    measured = dict(zip(SPADEObjective.LOSSES, losses.tolist()))
    expected = {**record["step1"]["G_losses"], **record["step1"]["D_losses"]}
    for nvlabs_name, value in expected.items():
        assert measured[LOSS_NAMES[nvlabs_name]] == pytest.approx(value, rel=1e-5, abs=1e-6), nvlabs_name
    if "KLD" not in expected:
        assert measured["G_kld"] == 0
    if memory_format == torch.channels_last:
        # Adam's first step with beta1 = 0 moves each weight by lr times the sign of its gradient,
        # so a gradient that rounding alone (other convolution kernels than NVlabs') puts on the
        # other side of 0 moves a weight by 2 lr: the weights are compared in NCHW, where the
        # kernels are NVlabs'. The D step's losses above already come from the updated G.
        return

    assert_weights_after_step(networks, nvlabs_after_step[name])


def assert_weights_after_step(networks: Networks, reference: dict, rename=ours) -> None:
    """Every tensor of our networks after a step against the reference's own trainer's after its
    step (`reference`: by part, G, D, E, with the reference's names, which `rename` maps to ours)."""
    for part, network in (("G", networks.generator), ("D", networks.discriminator), ("E", networks.encoder)):
        if network is None:
            continue
        state, parameters = network.state_dict(), dict(network.named_parameters())
        theirs = reference[part]
        assert {rename(k) for k in theirs} == set(state), part
        noise = 0
        for their_name, expected in theirs.items():
            measured, where = state[rename(their_name)], f"{part} {their_name}"
            if rename(their_name) not in parameters:  # batch-norm statistics, spectral norm's u and v
                torch.testing.assert_close(measured, expected, **TOLERANCE, msg=where)
                continue
            # Adam's first update is lr x g / (|g| + eps): where a gradient is 0 but for rounding,
            # its direction is noise and the weight moves anywhere within lr. Those are left out;
            # every other update (exact zeros included: they stay put) agrees to rounding.
            gradient = parameters[rename(their_name)].grad.abs()
            rounding = (gradient > 0) & (gradient < NOISE_GRADIENT * gradient.max())
            torch.testing.assert_close(measured[~rounding], expected[~rounding], rtol=1e-6, atol=2e-7, msg=where)
            noise += int(rounding.sum())
        assert noise <= NOISE_SHARE * sum(p.numel() for p in parameters.values()), part


def nvlabs_vgg_loss(monkeypatch, features: torch.nn.Sequential) -> torch.nn.Module:
    """NVlabs' VGGLoss, loaded from its files without its package's __init__ (which needs dill
    and every network), on the given VGG19 weights instead of ImageNet's, on the CPU."""
    monkeypatch.setitem(sys.modules, "models", types.ModuleType("models"))
    monkeypatch.setitem(sys.modules, "models.networks", types.ModuleType("models.networks"))
    for name, path in (
        ("sync_batchnorm", "sync_batchnorm/__init__.py"),
        ("normalization", "normalization.py"),
        ("architecture", "architecture.py"),
        ("loss", "loss.py"),
    ):
        spec = importlib.util.spec_from_file_location(f"models.networks.{name}", REFERENCE / "nvlabs-spade/models/networks" / path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
    whole = torchvision.models.vgg19()
    whole.features = features
    monkeypatch.setattr(torchvision.models, "vgg19", lambda **kwargs: whole)
    monkeypatch.setattr(sys.modules["models.networks.architecture"].VGG19, "cuda", lambda self: self)
    return sys.modules["models.networks.loss"].VGGLoss(gpu_ids=[])


@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")
def test_nvlabs_vgg_loss_and_its_gradient(monkeypatch):
    torch.manual_seed(0)
    features = torchvision.models.vgg19().features
    theirs, ours = nvlabs_vgg_loss(monkeypatch, features), VGGLoss(features)
    fake = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_()
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    expected = theirs(fake, real)
    (expected_grad,) = torch.autograd.grad(expected, fake)
    measured = ours(fake, real)
    (measured_grad,) = torch.autograd.grad(measured, fake)
    torch.testing.assert_close(measured, expected, **TOLERANCE)
    torch.testing.assert_close(measured_grad, expected_grad, **TOLERANCE)
