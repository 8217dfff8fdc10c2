"""Facts of the networks' architecture that the config is checked against. No torch here: the
workflow imports this (through pipeline.config) to validate a config before any job runs."""

from __future__ import annotations

# What switchable norm can mix (norm: switch, switch_stats), in the order of its mixing weights.
SWITCH_STATS = ("instance", "layer", "batch")

# Upsampling steps of the SPADE generator, per num_upsampling_layers.
SPADE_UPSAMPLINGS = {"normal": 5, "more": 6, "most": 7}

# Version of what the networks' state dicts hold for the same settings; raised when the code
# changes it (2: spectral norm as weight_orig/u/v, NVlabs' discriminator strides). It is part of
# a training run's key and of generator.pt, and a train rule parameter: a change retrains.
NETWORK_FORMAT = 2


# OASIS's U-Net discriminator halves the image this many times (and its generator doubles its
# grid 5 times, as SPADE's "normal").
UNET_HALVINGS = 6


def generator_stride(generator: str, num_upsampling_layers: str, resnet_downsample: int) -> int:
    """How many times a generator halves (pix2pixHD) or doubles (SPADE) its grid, as a factor, or
    OASIS's discriminator halves the image: the working resolution must be a multiple of it."""
    if generator == "oasis":
        return 2**UNET_HALVINGS
    steps = resnet_downsample if generator == "pix2pixhd" else SPADE_UPSAMPLINGS[num_upsampling_layers]
    return 2**steps
