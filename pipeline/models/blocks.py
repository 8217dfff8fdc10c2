"""Residual blocks: SPADE's (normalise, then convolve, with the label map at every norm) and
pix2pixHD's (convolve, then instance-normalise)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.normalization import SpectralNormConv2d


class SPADEResBlock(nn.Module):
    """Two SPADE -> leaky ReLU -> 3x3 conv steps plus a shortcut, learned (SPADE -> 1x1 conv)
    when the channel count changes. Spectral norm on the block's convs, not on SPADE's.
    `modulated_norm(channels)` makes each norm: SPADE, or CLADE in its place."""

    def __init__(self, fin: int, fout: int, modulated_norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        middle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.norm_0 = modulated_norm(fin)
        self.conv_0 = SpectralNormConv2d(fin, middle, 3, padding=1)
        self.norm_1 = modulated_norm(middle)
        self.conv_1 = SpectralNormConv2d(middle, fout, 3, padding=1)
        if self.learned_shortcut:
            self.norm_s = modulated_norm(fin)
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


def conv_norm(conv: nn.Module, normalize: bool) -> nn.Module:
    """pix2pixHD's conv followed by instance norm; the conv's bias is dropped, since the norm
    subtracts it again."""
    if not normalize:
        return conv
    conv.register_parameter("bias", None)
    return nn.Sequential(conv, nn.InstanceNorm2d(conv.out_channels, affine=False))


class ResnetBlock(nn.Module):
    """pix2pixHD's residual block: x + (pad, conv, IN, ReLU, pad, conv, IN)(x)."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(pad),
            conv_norm(nn.Conv2d(channels, channels, kernel_size), True),
            nn.ReLU(),
            nn.ReflectionPad2d(pad),
            conv_norm(nn.Conv2d(channels, channels, kernel_size), True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)
