"""A model variant's networks, built from its ModelConfig and initialised as NVlabs' are."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.config import ModelConfig
from pipeline.labelmaps import NUM_CLASSES
from pipeline.models.average import MovingAverage
from pipeline.models.discriminator import MultiscaleDiscriminator, UNetDiscriminator
from pipeline.models.encoder import ConvEncoder
from pipeline.models.generator import OASISGenerator, Pix2PixHDGenerator, SPADEGenerator, SPADEUnpoolGenerator
from pipeline.models.normalization import SpectralNormConv2d

IMAGE_CHANNELS = 3


@dataclass
class Networks:
    generator: nn.Module
    discriminator: nn.Module
    encoder: nn.Module | None
    # OASIS in training: the moving average of the generator's weights, which synthesises.
    average: MovingAverage | None = None

    def synthesizing(self) -> "Networks":
        """The networks synthesis uses: the generator's moving average where there is one."""
        if self.average is None:
            return self
        return Networks(self.average.network, self.discriminator, self.encoder)


def build_generator(model: ModelConfig, label_nc: int = NUM_CLASSES) -> nn.Module:
    if model.generator in ("spade", "clade"):
        return SPADEGenerator(
            label_nc,
            model.training.resolution,
            model.ngf,
            model.norm,
            model.num_upsampling_layers,
            model.vae,
            model.z_dim,
            model.switch_stats,
            class_adaptive=model.generator == "clade",
            positional=model.positional_encoding,
        )
    if model.generator == "spade_unpool":
        return SPADEUnpoolGenerator(label_nc, model.training.resolution, model.ngf, model.norm, model.switch_stats)
    if model.generator == "oasis":
        return OASISGenerator(
            label_nc, model.training.resolution, model.ngf, model.norm, model.z_dim, model.switch_stats
        )
    return Pix2PixHDGenerator(
        label_nc, model.ngf, model.resnet_downsample, model.resnet_blocks, model.unnormalized_first
    )


def build_discriminator(model: ModelConfig, label_nc: int = NUM_CLASSES) -> nn.Module:
    """OASIS's segmenter of the image for oasis, else SPADE's, which sees label map and image."""
    if model.generator == "oasis":
        return UNetDiscriminator(label_nc, model.ndf, IMAGE_CHANNELS)
    return MultiscaleDiscriminator(label_nc + IMAGE_CHANNELS, model.ndf, model.n_layers_D, model.num_D)


def build(model: ModelConfig, label_nc: int = NUM_CLASSES) -> Networks:
    """Generator, discriminator and, for VAE models, the encoder, initialised as in the
    references: Xavier normal weights with gain 0.02, zero biases. (Training adds the generator's
    moving average, where training.ema_decay asks for one.)"""
    networks = Networks(
        generator=build_generator(model, label_nc),
        discriminator=build_discriminator(model, label_nc),
        encoder=ConvEncoder(model.training.resolution, model.ngf, model.z_dim) if model.vae else None,
    )
    for network in (networks.generator, networks.discriminator, networks.encoder):
        if network is not None:
            network.apply(_xavier_init)
    return networks


def _xavier_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        # A spectral-normed layer keeps its trainable weight as weight_orig.
        nn.init.xavier_normal_(module.weight_orig if isinstance(module, SpectralNormConv2d) else module.weight, gain=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def parameter_count(network: nn.Module | None) -> int | None:
    return None if network is None else sum(p.numel() for p in network.parameters())
