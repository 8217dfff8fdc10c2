"""The VAE's image encoder: strided 3x3 convs to a 4x4 grid, then mu and logvar of z."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.normalization import SpectralNormConv2d


def sample_z(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """z from the encoder's posterior N(mu, exp(logvar)) by reparameterisation: mu + noise * std,
    with noise ~ N(0, I) drawn from torch's global RNG unless given (the reference draws it so)."""
    if noise is None:
        noise = torch.randn_like(mu)
    return mu + noise * torch.exp(0.5 * logvar)


class ConvEncoder(nn.Module):
    """Images are resized to 256 (6 stride-2 layers) as in the reference. Below a working
    resolution of 256 they are resized to 128 with 5 layers instead: the reference drops the
    sixth layer there but still resizes to 256, which leaves an 8x8 grid its linear layers
    cannot take."""

    def __init__(self, resolution: int, ngf: int, z_dim: int) -> None:
        super().__init__()
        self.input_size = 256 if resolution >= 256 else 128
        widths = [3, ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf] + ([8 * ngf] if self.input_size == 256 else [])
        self.layers = nn.ModuleList(
            nn.Sequential(
                SpectralNormConv2d(fin, fout, 3, stride=2, padding=1, bias=False),
                nn.InstanceNorm2d(fout, affine=False),
            )
            for fin, fout in zip(widths, widths[1:])
        )
        self.fc_mu = nn.Linear(8 * ngf * 4 * 4, z_dim)
        self.fc_var = nn.Linear(8 * ngf * 4 * 4, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear")
        for index, layer in enumerate(self.layers):
            x = layer(x if index == 0 else F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).flatten(1)
        # mu and logvar in fp32 under autocast: z's spread is exp(logvar / 2), and the KL term
        # sums them over the batch.
        with torch.autocast(x.device.type, enabled=False):
            return self.fc_mu(x.float()), self.fc_var(x.float())
