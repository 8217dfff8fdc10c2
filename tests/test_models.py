"""The networks: parameter counts equal NVlabs/SPADE's, every variant runs, and SPADE keeps the
semantics of uniform label maps that an input-only generator with instance norm washes out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ModelConfig, resolve
from pipeline.models.architecture import SWITCH_STATS
from pipeline.models.networks import build, parameter_count
from pipeline.models.normalization import SPADE, SpectralNormConv2d, SwitchableNorm2d

# The default comparison and the models of config.yaml beside it.
VARIANTS = [*resolve()["compare"], "clade_icpe"]


def model(name: str, **training) -> ModelConfig:
    return ModelConfig.from_config(resolve({"training": training}), name)


def tiny(name: str, resolution: int = 64) -> ModelConfig:
    config = resolve({"training": {"resolution": resolution}, "models": {name: {"ngf": 8, "ndf": 8}}, "compare": [name]})
    return ModelConfig.from_config(config, name)


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels.long(), 19).permute(0, 3, 1, 2).float()


# Measured from the NVlabs/SPADE code (CLADE's code for clade, clade_icpe; OASIS's for oasis) for
# label_nc 19, no instance map, 256x256, ngf = ndf = 64.
@pytest.mark.parametrize(
    "name, generator, discriminator, encoder",
    [
        ("spade", 92_538_819, 5_566_594, None),
        ("spade_instance", 92_538_819, 5_566_594, None),
        ("spade_vae", 109_205_443, 5_566_594, 10_463_424),
        ("clade", 67_321_539, 5_566_594, None),
        ("clade_icpe", 67_321_647, 5_566_594, None),
        ("oasis", 70_665_155, 22_250_324, None),
    ],
)
def test_parameter_counts_equal_the_reference(name, generator, discriminator, encoder):
    networks = build(model(name))
    assert parameter_count(networks.generator) == generator
    assert parameter_count(networks.discriminator) == discriminator
    assert parameter_count(networks.encoder) == encoder


def test_switchable_norm_adds_only_its_six_mixing_weights_per_norm():
    spade, switch = build(model("spade")).generator, build(model("spade_switchnorm")).generator
    norms = sum(isinstance(m, SwitchableNorm2d) for m in switch.modules())
    assert norms == sum(isinstance(m, SPADE) for m in spade.modules()) == 18
    assert parameter_count(switch) - parameter_count(spade) == 6 * norms


def test_switchable_norm_of_instance_and_layer_statistics_has_four_mixing_weights_per_norm():
    spade, switch = build(model("spade")).generator, build(model("spade_switchnorm_inln")).generator
    norms = [m for m in switch.modules() if isinstance(m, SwitchableNorm2d)]
    assert len(norms) == 18 and {m.stats for m in norms} == {("instance", "layer")}
    assert parameter_count(switch) - parameter_count(spade) == 4 * len(norms)


@pytest.mark.parametrize("stats, independent", [(("instance", "layer"), True), (("instance", "layer", "batch"), False)])
def test_switchable_norm_without_batch_statistics_normalises_each_image_on_its_own(stats, independent):
    """Gorrepati & Lau's switchable norm "ignored the sum over batch normalization": an image's output
    must not depend on the other images of its batch (in training, where batch statistics would
    be the batch's own). Luo et al.'s, with the batch term, does: the check can fail."""
    torch.manual_seed(0)
    norm = SwitchableNorm2d(4, stats).train()
    with torch.no_grad():
        norm.mean_weight.copy_(torch.tensor([0.3, -0.2, 0.5][: len(stats)]))
        norm.var_weight.copy_(torch.tensor([-0.1, 0.4, 0.2][: len(stats)]))
    image = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        one = norm(torch.cat([image, torch.randn(3, 4, 8, 8)]))[:1]
        other = norm(torch.cat([image, 5 + 3 * torch.randn(3, 4, 8, 8)]))[:1]
    assert torch.allclose(one, other, atol=1e-6) == independent
    assert hasattr(norm, "running_mean") != independent  # no batch statistics, nothing to track


def test_spade_unpool_adds_the_max_pool_encoder_and_takes_its_features_instead_of_the_label_map():
    """At ngf 64: Gorrepati & Lau's IN+LN SPADE generator, whose first conv (label map -> 16 ngf) gives
    way to the encoder (3x3 conv + ReLU per level, widths 2, 4, 8, 16, 16 x ngf) and a 3x3 conv
    of its 16 ngf features."""
    ngf, label_nc = 64, 19
    widths = [label_nc, 2 * ngf, 4 * ngf, 8 * ngf, 16 * ngf, 16 * ngf]
    encoder = sum(9 * a * b + b for a, b in zip(widths, widths[1:]))
    first_conv = 9 * label_nc * 16 * ngf + 16 * ngf
    features_conv = 9 * (16 * ngf) ** 2 + 16 * ngf
    plain = parameter_count(build(model("spade_switchnorm_inln")).generator)
    assert parameter_count(build(model("spade_unpool")).generator) == plain - first_conv + encoder + features_conv


@pytest.mark.parametrize("resolution", [32, 64, 96, 160])
def test_spade_unpool_scatters_each_block_input_to_where_the_encoders_maxima_were(resolution):
    """Every resolution the schema allows for it (multiples of 32) keeps its size; the inputs of
    the blocks after each unpooling hold one value per 2x2 window, at the index the encoder's
    max pool recorded (nearest upsampling would repeat it four times), and the last upsampling
    stays nearest-neighbour."""
    from pipeline.models.generator import SPADEUnpoolGenerator

    torch.manual_seed(0)
    generator = build(tiny("spade_unpool", resolution)).generator.eval()
    assert isinstance(generator, SPADEUnpoolGenerator)
    seg = one_hot(torch.randint(0, 19, (2, resolution, resolution)))
    inputs = {}
    for name in ("G_middle_0", "up_0", "up_1", "up_2", "up_3"):
        getattr(generator, name).register_forward_hook(lambda m, args, out, name=name: inputs.update({name: args[0]}))
    with torch.no_grad():
        assert generator(seg).shape == (2, 3, resolution, resolution)
        _, indices = generator.encoder(seg)
    assert [i.shape[-1] for i in indices] == [resolution // 2**k for k in range(1, 6)]
    for name, level in (("G_middle_0", 4), ("up_0", 3), ("up_1", 2), ("up_2", 1)):
        x = inputs[name]
        where = indices[level]
        assert x.shape[1] == where.shape[1] and x.shape[-1] == 2 * where.shape[-1]
        kept = torch.zeros_like(x).flatten(2).scatter_(2, where.flatten(2), 1.0).view_as(x).bool()
        assert (x[~kept] == 0).all()
        assert (x[kept] != 0).float().mean() > 0.5
    blocks = inputs["up_3"].unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)  # 2x2 windows of the last block's input
    assert (blocks == blocks[..., :1]).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_maps_a_label_map_to_an_image_and_d_scores_it(name):
    torch.manual_seed(0)
    cfg = tiny(name)
    networks = build(cfg)
    seg = one_hot(torch.randint(0, 19, (2, 64, 64)))
    z = None
    if networks.encoder is not None:
        mu, logvar = networks.encoder(torch.rand(2, 3, 64, 64) * 2 - 1)
        assert mu.shape == logvar.shape == (2, cfg.z_dim)
        z = mu
    fake = networks.generator(seg, z)
    assert fake.shape == (2, 3, 64, 64) and fake.abs().max() <= 1
    if cfg.generator == "oasis":  # its discriminator segments the image: "fake" and each class, per pixel
        logits = networks.discriminator(fake, fake.flip(-1))
        assert len(logits) == 2 and logits[0].shape == (2, 20, 64, 64)
        return
    scores = networks.discriminator(torch.cat([seg, fake], 1))
    assert len(scores) == cfg.num_D and len(scores[0]) == cfg.n_layers_D + 1
    assert scores[1][-1].shape[-1] < scores[0][-1].shape[-1]  # the second scale sees a halved image


@pytest.mark.parametrize("n_layers, logits", [(4, [35, 19]), (3, [67, 35]), (1, [130, 66])])
def test_discriminator_strides_as_nvlabs_the_last_middle_conv_has_stride_1(n_layers, logits):
    """At 256x256 NVlabs' default (n_layers_D 4) gives 35x35 patch logits at the first scale and
    19x19 at the second (tests/test_reference_parity.py checks the values too)."""
    from pipeline.models.discriminator import MultiscaleDiscriminator

    discriminator = MultiscaleDiscriminator(22, ndf=4, n_layers=n_layers, num_D=2)
    with torch.no_grad():
        scales = discriminator(torch.zeros(1, 22, 256, 256))
    assert [scale[-1].shape[-1] for scale in scales] == logits
    assert all(len(scale) == n_layers + 1 for scale in scales)


def test_spade_keeps_uniform_label_maps_apart_where_input_plus_instance_norm_cannot():
    """Park et al. 2019, figure 3: a uniform label map fed at the input becomes a constant map that
    instance norm turns into zeros, so every uniform map looks the same to the rest of the
    network; SPADE re-injects the map at every norm. (Past the first norm the two pix2pixHD
    outputs differ only by rounding noise that later norms amplify, so the test looks there.)"""
    torch.manual_seed(0)
    sky, grass = one_hot(torch.full((1, 64, 64), 0)), one_hot(torch.full((1, 64, 64), 17))

    def after_first_instance_norm(name: str, seg: torch.Tensor) -> torch.Tensor:
        generator = build(tiny(name)).generator.eval()
        first = next(m for m in generator.modules() if isinstance(m, torch.nn.InstanceNorm2d))
        seen = []
        first.register_forward_hook(lambda module, inputs, output: seen.append(output))
        with torch.no_grad():
            generator(seg)
        return seen[0]

    for name in ("spade_instance", "spade_unpool"):
        torch.manual_seed(0)
        spade = build(tiny(name)).generator.eval()
        with torch.no_grad():
            assert (spade(sky) - spade(grass)).abs().max() > 0.1, name
    for seg in (sky, grass):
        assert after_first_instance_norm("pix2pixhd", seg).abs().max() < 1e-6  # zeros, up to rounding
    # the anonymous CVM submission's variant: without its first two instance norms, pix2pixHD keeps them apart (activations
    # are small at the reference's init, so compare relative to their size)
    noin_sky, noin_grass = (after_first_instance_norm("pix2pixhd_noin", seg) for seg in (sky, grass))
    assert noin_sky.abs().max() > 1e-5
    assert (noin_sky - noin_grass).abs().max() > 0.5 * noin_sky.abs().max()


def test_spectral_norm_conv_is_torchs_hook_based_spectral_norm_the_references():
    """Same weights, u and v: the same outputs in train mode (one power iteration v <- W^T u,
    u <- W v, as NVlabs' torch.nn.utils.spectral_norm runs it) and in eval mode, and the same
    u, v after a train-mode forward."""
    torch.manual_seed(0)
    ours = SpectralNormConv2d(6, 5, 3, padding=1)
    theirs = torch.nn.utils.spectral_norm(torch.nn.Conv2d(6, 5, 3, padding=1))
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 8, 8)
    for mode in (True, False, True):
        ours.train(mode), theirs.train(mode)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours.weight_u, theirs.weight_u, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours.weight_v, theirs.weight_v, rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
def test_spectral_norm_estimates_sigma_in_fp32_under_bf16_autocast():
    """The convolution runs in bf16; the power iteration and sigma do not (CUDA autocast would
    otherwise run torch.mv in bf16; CPU autocast leaves mv alone, so only CUDA can show it)."""
    device = "cuda"
    torch.manual_seed(0)
    plain = SpectralNormConv2d(16, 16, 3, padding=1).to(device)
    autocast = SpectralNormConv2d(16, 16, 3, padding=1).to(device)
    autocast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 16, 8, 8, device=device)
    plain(x)
    with torch.autocast(device, dtype=torch.bfloat16):
        assert autocast(x).dtype == torch.bfloat16
        weight = autocast.eval().normalized_weight()
    assert torch.equal(autocast.weight_u, plain.weight_u) and torch.equal(autocast.weight_v, plain.weight_v)
    assert weight.dtype == torch.float32 and torch.equal(weight, plain.eval().normalized_weight())


def test_spade_resizes_label_maps_by_nearest_neighbour():
    spade = SPADE("instance", 4, 19, SWITCH_STATS)
    seen = {}

    def keep_input(module, inputs, output):
        seen["seg"] = inputs[0]

    spade.mlp_shared.register_forward_hook(keep_input)
    seg = one_hot(torch.randint(0, 19, (1, 32, 32)))
    spade(torch.randn(1, 4, 8, 8), seg)
    assert set(seen["seg"].unique().tolist()) <= {0.0, 1.0}  # no blended class values
    assert torch.equal(seen["seg"].sum(1), torch.ones(1, 8, 8))


def test_describe_cli_prints_the_counts_as_json(tmp_path):
    import json
    import subprocess
    import sys

    from support import REPO

    def describe(name: str, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "describe", "--config", "config.yaml", *options, "--model", name],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )

    result = describe("spade_vae")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"generator": 109_205_443, "discriminator": 5_566_594, "encoder": 10_463_424}
    unknown = describe("spaed")
    assert unknown.returncode == 1 and "--model spaed: no such entry under models" in unknown.stderr
    # CLADE's norms look gamma and beta up instead of convolving the label map: at 256x256, ngf 64,
    # 84 GFLOPs against SPADE's 282 (docs/benchmarks.md, "Model sizes"); at 64x64, ngf 8 here.
    (tmp_path / "small.yaml").write_text("training: {resolution: 64}\nmodels: {spade: {ngf: 8}, clade: {ngf: 8}}\n")
    gflops = {}
    for name in ("spade", "clade"):
        result = describe(name, str(tmp_path / "small.yaml"), "--flops")
        assert result.returncode == 0, result.stderr
        gflops[name] = json.loads(result.stdout)["generator_gflops"]
    assert 0 < gflops["clade"] < gflops["spade"] / 2


@pytest.mark.parametrize("layers, resolution, grid", [("normal", 64, 2), ("more", 128, 2), ("most", 128, 1)])
def test_num_upsampling_layers_sets_the_starting_grid_and_keeps_the_output_size(layers, resolution, grid):
    config = resolve({"training": {"resolution": resolution},
                      "models": {"spade": {"ngf": 8, "ndf": 8, "num_upsampling_layers": layers}}})
    generator = build(ModelConfig.from_config(config, "spade")).generator
    assert generator.grid == grid
    seg = one_hot(torch.randint(0, 19, (2, resolution, resolution)))  # batch norm on a 1x1 grid needs 2
    assert generator(seg).shape == (2, 3, resolution, resolution)
    if layers == "most":
        assert generator.conv_img.in_channels == 4  # up_4 halves ngf once more
