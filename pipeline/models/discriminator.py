"""Discriminators: SPADE's multiscale PatchGAN (the same patch classifier on the image pair at full
and at halved resolutions, each returning its intermediate features for feature matching), and
OASIS's U-Net segmenter of the image alone."""

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


class UNetBlock(nn.Module):
    """OASIS's discriminator block: two (leaky ReLU ->) 3x3 spectral-normed convs, the second's
    output average-pooled when the block goes down, the input upsampled (nearest) before the first
    when it goes up; plus a shortcut, through a 1x1 spectral-normed conv when the width changes.
    The first block of the encoder has no activation before its first conv, and pools its shortcut
    before the 1x1 conv instead of after it."""

    def __init__(self, fin: int, fout: int, direction: str, first: bool = False) -> None:
        super().__init__()
        self.direction, self.first = direction, first
        self.conv_0 = SpectralNormConv2d(fin, fout, 3, padding=1)
        self.conv_1 = SpectralNormConv2d(fout, fout, 3, padding=1)
        self.conv_s = SpectralNormConv2d(fin, fout, 1) if fin != fout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = x if self.first else F.leaky_relu(x, 0.2)
        if self.direction == "up":
            dx = F.interpolate(dx, scale_factor=2, mode="nearest")
        dx = self.conv_1(F.leaky_relu(self.conv_0(dx), 0.2))
        if self.direction == "down":
            dx = F.avg_pool2d(dx, 2)
        return self.shortcut(x) + dx

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.direction == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.direction == "down" and self.first:
            x = F.avg_pool2d(x, 2)
        if self.conv_s is not None:
            x = self.conv_s(x)
        if self.direction == "down" and not self.first:
            x = F.avg_pool2d(x, 2)
        return x


class UNetDiscriminator(nn.Module):
    """OASIS's discriminator (Sushko et al. 2021), a semantic segmenter of the image alone: per
    pixel, label_nc + 1 logits, "fake" at 0 and class c at c + 1. A U-Net: six encoder blocks of 2,
    2, 4, 4, 8 and 8 x ndf channels each halve the image; six decoder blocks mirror them, each
    after the first taking the matching encoder output beside its input, and double it back. The
    last decoder block's width and the 1x1 conv to the logits are 64 channels whatever ndf is, as
    in the authors' code."""

    WIDTHS = (2, 2, 4, 4, 8, 8)  # one block per halving: architecture.UNET_HALVINGS
    LAST = 64

    def __init__(self, label_nc: int, ndf: int, image_nc: int = 3) -> None:
        super().__init__()
        widths = [image_nc] + [width * ndf for width in self.WIDTHS]
        self.down = nn.ModuleList(
            UNetBlock(fin, fout, "down", first=index == 0) for index, (fin, fout) in enumerate(zip(widths, widths[1:]))
        )
        ins = [widths[-1]] + [2 * width for width in widths[-2:0:-1]]
        outs = widths[-2:0:-1] + [self.LAST]
        self.up = nn.ModuleList(UNetBlock(fin, fout, "up") for fin, fout in zip(ins, outs))
        self.logits = nn.Conv2d(self.LAST, label_nc + 1, 1)

    def forward(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each N x 3 x H x W image batch -> its N x (label_nc + 1) x H x W logits, one pass per batch
        in order (each pass advances the spectral norms' u and v, as a call of the authors' D). One
        call for them all: DistributedDataParallel takes one forward per backward."""
        return tuple(self.segment(image) for image in images)

    def segment(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](x)
        for block, skip in zip(self.up[1:], reversed(skips[:-1])):
            x = block(torch.cat([skip, x], 1))
        return self.logits(x)
