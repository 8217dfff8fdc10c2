"""Normalisation layers: the parameter-free norms SPADE modulates, and SPADE itself.

SPADE (Park et al. 2019): normalise activations without learned affine parameters, then scale
and shift them per pixel with gamma and beta predicted from the label map, so the layout is
re-injected at every resolution instead of being washed out by normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPADE_HIDDEN = 128  # width of SPADE's shared conv; fixed in the reference implementation
PARAM_FREE_NORMS = ("batch", "instance", "switch")


class SwitchableNorm2d(nn.Module):
    """Switchable normalisation (Luo et al. 2019) without its affine part: the mean and the
    variance are learned softmax mixtures of instance, layer and batch statistics. Batch
    statistics come from running averages in eval mode, as in batch norm."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.mean_weight = nn.Parameter(torch.ones(3))
        self.var_weight = nn.Parameter(torch.ones(3))
        self.register_buffer("running_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("running_var", torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # statistics in fp32 even under autocast
        mean_in = x32.mean(dim=(2, 3), keepdim=True)
        var_in = x32.var(dim=(2, 3), keepdim=True, unbiased=False)
        mean_ln = mean_in.mean(dim=1, keepdim=True)
        var_ln = (var_in + mean_in**2).mean(dim=1, keepdim=True) - mean_ln**2
        if self.training:
            mean_bn = mean_in.mean(dim=0, keepdim=True)
            var_bn = (var_in + mean_in**2).mean(dim=0, keepdim=True) - mean_bn**2
            with torch.no_grad():
                self.running_mean.lerp_(mean_bn, self.momentum)
                self.running_var.lerp_(var_bn, self.momentum)
        else:
            mean_bn, var_bn = self.running_mean, self.running_var
        mw, vw = self.mean_weight.softmax(0), self.var_weight.softmax(0)
        mean = mw[0] * mean_in + mw[1] * mean_ln + mw[2] * mean_bn
        var = vw[0] * var_in + vw[1] * var_ln + vw[2] * var_bn
        return ((x32 - mean) / (var + self.eps).sqrt()).to(x.dtype)


def spectral_norm(layer: nn.Module) -> nn.Module:
    """Spectral normalisation by torch's hook-based API, the one the reference uses: in training,
    each forward first runs one power iteration v <- W^T u, u <- W v. torch's newer
    parametrization API iterates u <- W v, v <- W^T u instead (and 15 times at creation), so in
    train mode the same weights, u and v would give other outputs than the reference's."""
    return nn.utils.spectral_norm(layer)


def param_free_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation without learned scale and shift: SPADE provides those."""
    if kind == "batch":
        # On one GPU, the reference's synchronized batch norm is plain batch norm.
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "switch":
        return SwitchableNorm2d(channels)
    raise ValueError(f"unknown parameter-free norm {kind!r} (known: {', '.join(PARAM_FREE_NORMS)})")


class SPADE(nn.Module):
    """norm(x) * (1 + gamma(seg)) + beta(seg), with seg resized to x by nearest neighbour
    (class indices must never be blended)."""

    def __init__(self, norm: str, channels: int, label_nc: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.param_free_norm = param_free_norm(norm, channels)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, SPADE_HIDDEN, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        hidden = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(hidden)) + self.mlp_beta(hidden)
