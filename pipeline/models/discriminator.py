"""Multiscale PatchGAN discriminator: the same patch classifier on the image pair at full and
at halved resolutions, each returning its intermediate features for feature matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.normalization import SpectralNormConv2d


class NLayerDiscriminator(nn.Module):
    """n_layers 4x4 convs, then a 4x4 conv to one logit per patch. The first conv is plain with
    stride 2; the n_layers - 1 after it carry spectral norm and instance norm (conv bias
    dropped), double the channels up to 512, and have stride 2 except the last, which has
    stride 1 (as in the reference since its commit c0d50e6: at 256x256 the first scale gives
    35x35 patch logits); the logit conv has stride 1."""

    def __init__(self, input_nc: int, ndf: int, n_layers: int) -> None:
        super().__init__()
        stages = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        channels = ndf
        for layer in range(1, n_layers):
            previous, channels = channels, min(2 * channels, 512)
            stride = 1 if layer == n_layers - 1 else 2
            conv = SpectralNormConv2d(previous, channels, 4, stride=stride, padding=2, bias=False)
            stages.append(nn.Sequential(conv, nn.InstanceNorm2d(channels, affine=False), nn.LeakyReLU(0.2)))
        stages.append(nn.Sequential(nn.Conv2d(channels, 1, 4, stride=1, padding=2)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, input_nc: int, ndf: int, n_layers: int, num_D: int) -> None:
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(input_nc, ndf, n_layers) for _ in range(num_D))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """For each scale, its features; the last one is the patch logits."""
        outputs = []
        for scale in self.scales:
            outputs.append(scale(x))
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return outputs
