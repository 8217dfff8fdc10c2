"""Generators: SPADE's (the label map modulates every block) and pix2pixHD's global generator
(the label map is only the input; the classic baseline of the SPADE paper)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import SPADE_UPSAMPLINGS
from pipeline.models.blocks import ResnetBlock, SPADEResBlock, conv_norm


class SPADEGenerator(nn.Module):
    """From a 16*ngf-channel grid of side resolution / 2**upsamplings, SPADE residual blocks
    upsample to the output while halving channels down to ngf. Without a VAE the grid is a
    conv of the downsampled label map; with one it is a linear map of z."""

    def __init__(
        self,
        label_nc: int,
        resolution: int,
        ngf: int = 64,
        norm: str = "batch",
        num_upsampling_layers: str = "normal",
        vae: bool = False,
        z_dim: int = 256,
    ) -> None:
        super().__init__()
        self.ngf, self.vae, self.z_dim = ngf, vae, z_dim
        self.more = num_upsampling_layers in ("more", "most")
        self.most = num_upsampling_layers == "most"
        self.grid = resolution // 2 ** SPADE_UPSAMPLINGS[num_upsampling_layers]
        if vae:
            self.fc = nn.Linear(z_dim, 16 * ngf * self.grid**2)
        else:
            self.fc = nn.Conv2d(label_nc, 16 * ngf, 3, padding=1)
        self.head_0 = SPADEResBlock(16 * ngf, 16 * ngf, label_nc, norm)
        self.G_middle_0 = SPADEResBlock(16 * ngf, 16 * ngf, label_nc, norm)
        self.G_middle_1 = SPADEResBlock(16 * ngf, 16 * ngf, label_nc, norm)
        self.up_0 = SPADEResBlock(16 * ngf, 8 * ngf, label_nc, norm)
        self.up_1 = SPADEResBlock(8 * ngf, 4 * ngf, label_nc, norm)
        self.up_2 = SPADEResBlock(4 * ngf, 2 * ngf, label_nc, norm)
        self.up_3 = SPADEResBlock(2 * ngf, ngf, label_nc, norm)
        final = ngf
        if self.most:
            self.up_4 = SPADEResBlock(ngf, ngf // 2, label_nc, norm)
            final = ngf // 2
        self.conv_img = nn.Conv2d(final, 3, 3, padding=1)

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """seg: N x label_nc x H x W one-hot label map -> N x 3 x H x W image in [-1, 1]."""
        if self.vae:
            if z is None:
                z = torch.randn(seg.shape[0], self.z_dim, device=seg.device)
            x = self.fc(z).view(-1, 16 * self.ngf, self.grid, self.grid)
        else:
            x = self.fc(F.interpolate(seg, size=(self.grid, self.grid), mode="nearest"))
        x = self.head_0(x, seg)
        x = self.G_middle_0(_up(x), seg)
        if self.more:
            x = _up(x)
        x = self.G_middle_1(x, seg)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(_up(x), seg)
        if self.most:
            x = self.up_4(_up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class Pix2PixHDGenerator(nn.Module):
    """pix2pixHD's global generator: 7x7 conv, strided downsampling, residual blocks, transposed
    upsampling, 7x7 conv; instance norm after each conv but the last. `unnormalized_first`
    removes the first n instance norms (a variant: the conv keeps its bias there)."""

    def __init__(
        self, label_nc: int, ngf: int = 64, n_downsample: int = 4, n_blocks: int = 9, unnormalized_first: int = 0
    ) -> None:
        super().__init__()
        norms = iter(range(2 * n_downsample + 1))  # the convs that may carry a norm, in order

        def normalized(conv: nn.Module) -> nn.Module:
            return conv_norm(conv, next(norms) >= unnormalized_first)

        layers: list[nn.Module] = [nn.ReflectionPad2d(3), normalized(nn.Conv2d(label_nc, ngf, 7)), nn.ReLU()]
        channels = ngf
        for _ in range(n_downsample):
            layers += [normalized(nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1)), nn.ReLU()]
            channels *= 2
        layers += [ResnetBlock(channels) for _ in range(n_blocks)]
        for _ in range(n_downsample):
            up = nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1)
            layers += [normalized(up), nn.ReLU()]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(seg)
