"""A model variant's networks, built from its ModelConfig and initialised as NVlabs' are."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.config import ModelConfig
from pipeline.labelmaps import NUM_CLASSES
from pipeline.models.discriminator import MultiscaleDiscriminator
from pipeline.models.encoder import ConvEncoder
from pipeline.models.generator import Pix2PixHDGenerator, SPADEGenerator, SPADEUnpoolGenerator
from pipeline.models.normalization import SpectralNormConv2d

IMAGE_CHANNELS = 3


@dataclass
class Networks:
    generator: nn.Module
    discriminator: nn.Module
    encoder: nn.Module | None


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
    return Pix2PixHDGenerator(
        label_nc, model.ngf, model.resnet_downsample, model.resnet_blocks, model.unnormalized_first
    )


def build(model: ModelConfig, label_nc: int = NUM_CLASSES) -> Networks:
    """Generator, discriminator (sees label map and image) and, for VAE models, the encoder,
    initialised as in the reference: Xavier normal weights with gain 0.02, zero biases."""
    networks = Networks(
        generator=build_generator(model, label_nc),
        discriminator=MultiscaleDiscriminator(label_nc + IMAGE_CHANNELS, model.ndf, model.n_layers_D, model.num_D),
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
