"""Normalisation layers: the parameter-free norms SPADE modulates, SPADE itself, and CLADE.

SPADE (Park et al. 2019): normalise activations without learned affine parameters, then scale
and shift them per pixel with gamma and beta predicted from the label map, so the layout is
re-injected at every resolution instead of being washed out by normalisation.

CLADE (Tan et al. 2021): the same, with gamma and beta learned per class and looked up by each
pixel's class instead of predicted by convolutions over the label map: SPADE's quality for a
small part of its compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.distributed import World
from pipeline.models.architecture import SWITCH_STATS

SPADE_HIDDEN = 128  # width of SPADE's shared conv; fixed in the reference implementation
POSITION_CHANNELS = 2  # CLADE's distance map: row and column offsets within a class's region
PARAM_FREE_NORMS = ("batch", "instance", "switch")


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the mean and the (biased) variance over the batch and the pixels, from
    per-sample instance statistics; in a distributed run over the whole global batch, all
    processes' samples together (the reference's synchronized batch norm), differentiably.
    Two passes (the mean, then the spread about it), as E[x^2] - E[x]^2 loses the variance to
    rounding where it is small against the mean (a 1x1 grid holds one value per sample)."""
    mean_in = x.mean(dim=(2, 3), keepdim=True)
    var_in = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    world = World.current()
    count = torch.full((1, 1, 1, 1), float(x.shape[0]), device=x.device, dtype=x.dtype)
    sums = world.sum(torch.cat([mean_in.sum(0, keepdim=True), count], 1))
    total = sums[:, -1:]
    mean = sums[:, :-1] / total
    var = world.sum((var_in + (mean_in - mean) ** 2).sum(0, keepdim=True)) / total
    return mean, var


class SyncBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d without affine parameters whose training-mode statistics are those of the
    global batch when several processes train together (nn.SyncBatchNorm runs on CUDA only; this
    works on the CPU with gloo too). On one process it is nn.BatchNorm2d, to the bit."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = World.current()
        if not (self.training and world.size > 1):
            return super().forward(x)
        x32 = x.float()
        mean, var = batch_moments(x32)
        count = x.shape[0] * x.shape[2] * x.shape[3] * world.size
        with torch.no_grad():
            self.running_mean.lerp_(mean.flatten(), self.momentum)
            self.running_var.lerp_(var.flatten() * count / (count - 1), self.momentum)  # unbiased, as nn.BatchNorm2d
            self.num_batches_tracked += 1
        return ((x32 - mean) / (var + self.eps).sqrt()).to(x.dtype)


class SwitchableNorm2d(nn.Module):
    """Switchable normalisation (Luo et al. 2019) without its affine part: the mean and the
    variance are learned softmax mixtures of instance, layer and batch statistics, or of a
    subset of them (Gorrepati & Lau mix instance and layer only). Batch statistics come from running
    averages in eval mode, as in batch norm, and from the global batch when several processes
    train together."""

    def __init__(self, channels: int, stats: Sequence[str], momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if len(stats) < 2 or len(set(stats)) != len(stats) or not set(stats) <= set(SWITCH_STATS):
            raise ValueError(f"switchable norm mixes two or three distinct statistics of {SWITCH_STATS}, not {stats}")
        self.stats = tuple(stat for stat in SWITCH_STATS if stat in stats)
        self.momentum, self.eps = momentum, eps
        self.mean_weight = nn.Parameter(torch.ones(len(self.stats)))
        self.var_weight = nn.Parameter(torch.ones(len(self.stats)))
        if "batch" in self.stats:
            self.register_buffer("running_mean", torch.zeros(1, channels, 1, 1))
            self.register_buffer("running_var", torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # statistics in fp32 even under autocast
        mean_in = x32.mean(dim=(2, 3), keepdim=True)
        var_in = x32.var(dim=(2, 3), keepdim=True, unbiased=False)
        moments = {"instance": (mean_in, var_in)}
        if "layer" in self.stats:
            mean_ln = mean_in.mean(dim=1, keepdim=True)
            moments["layer"] = (mean_ln, (var_in + mean_in**2).mean(dim=1, keepdim=True) - mean_ln**2)
        if "batch" in self.stats:
            moments["batch"] = self._batch_moments(x32, mean_in, var_in)
        mw, vw = self.mean_weight.softmax(0), self.var_weight.softmax(0)
        mean = sum(w * moments[stat][0] for w, stat in zip(mw, self.stats))
        var = sum(w * moments[stat][1] for w, stat in zip(vw, self.stats))
        return ((x32 - mean) / (var + self.eps).sqrt()).to(x.dtype)

    def _batch_moments(
        self, x32: torch.Tensor, mean_in: torch.Tensor, var_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        if World.current().size > 1:
            mean_bn, var_bn = batch_moments(x32)
        else:
            mean_bn = mean_in.mean(dim=0, keepdim=True)
            var_bn = (var_in + mean_in**2).mean(dim=0, keepdim=True) - mean_bn**2
        with torch.no_grad():
            self.running_mean.lerp_(mean_bn, self.momentum)
            self.running_var.lerp_(var_bn, self.momentum)
        return mean_bn, var_bn


class SpectralNormConv2d(nn.Conv2d):
    """nn.Conv2d whose weight is divided by its largest singular value, estimated as
    torch.nn.utils.spectral_norm (the reference's) estimates it: in training, one power
    iteration v <- W^T u, u <- W v before each forward, then sigma = u . W v; in eval mode the
    stored u and v. Its state is torch's too: weight_orig, weight_u, weight_v.

    Written out rather than taken from torch because neither torch API fits: the newer
    parametrization iterates u <- W v, v <- W^T u (and 15 times at creation), which gives other
    train-mode outputs than the reference's; and both run the estimate in bf16 under autocast,
    where here it always runs in fp32."""

    def __init__(self, *args, eps: float = 1e-12, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        weight = self.weight
        del self.weight
        self.weight_orig = nn.Parameter(weight.detach())
        self.eps = eps
        self.register_buffer("weight_u", F.normalize(weight.new_empty(weight.shape[0]).normal_(), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(weight.new_empty(weight[0].numel()).normal_(), dim=0, eps=eps))

    def normalized_weight(self) -> torch.Tensor:
        with torch.autocast(self.weight_orig.device.type, enabled=False):
            matrix = self.weight_orig.flatten(1)
            u, v = self.weight_u, self.weight_v
            if self.training:
                with torch.no_grad():
                    v = F.normalize(torch.mv(matrix.t(), u), dim=0, eps=self.eps, out=v)
                    u = F.normalize(torch.mv(matrix, v), dim=0, eps=self.eps, out=u)
                # The buffers change in place at the next forward; autograd keeps these values.
                u, v = u.clone(), v.clone()
            return self.weight_orig / torch.dot(u, torch.mv(matrix, v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


def param_free_norm(kind: str, channels: int, switch_stats: Sequence[str]) -> nn.Module:
    """Normalisation without learned scale and shift: SPADE provides those. `switch_stats`:
    what a switchable norm mixes."""
    if kind == "batch":
        # The reference's synchronized batch norm.
        return SyncBatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "switch":
        return SwitchableNorm2d(channels, switch_stats)
    raise ValueError(f"unknown parameter-free norm {kind!r} (known: {', '.join(PARAM_FREE_NORMS)})")


class SPADE(nn.Module):
    """norm(x) * (1 + gamma(seg)) + beta(seg), with seg resized to x by nearest neighbour
    (class indices must never be blended)."""

    def __init__(
        self, norm: str, channels: int, label_nc: int, switch_stats: Sequence[str], kernel_size: int = 3
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.param_free_norm = param_free_norm(norm, channels, switch_stats)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, SPADE_HIDDEN, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        hidden = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(hidden)) + self.mlp_beta(hidden)


class ClassAffine(nn.Module):
    """CLADE's class-adaptive scale and shift: x * gamma[c] + beta[c] for a pixel of class c (gamma
    starts uniform in [0, 1], beta at 0; not 1 + gamma as in SPADE). With its intra-class
    positional encoding, both are modulated per pixel by a 1x1 conv of the 2-channel distance
    map (pipeline.positions): gamma * (1 + conv_w(dist)), beta * (1 + conv_b(dist))."""

    def __init__(self, channels: int, label_nc: int, positional: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(label_nc, channels).uniform_(0, 1))
        self.bias = nn.Parameter(torch.zeros(label_nc, channels))
        self.positional = positional
        if positional:
            self.dist_conv_w = nn.Conv2d(POSITION_CHANNELS, 1, 1)
            self.dist_conv_b = nn.Conv2d(POSITION_CHANNELS, 1, 1)

    def forward(self, x: torch.Tensor, classes: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """`dist`: N x 2 x H x W, read only with the positional encoding."""
        gamma = F.embedding(classes, self.weight).permute(0, 3, 1, 2)
        beta = F.embedding(classes, self.bias).permute(0, 3, 1, 2)
        if self.positional:
            gamma = gamma * (1 + self.dist_conv_w(dist))
            beta = beta * (1 + self.dist_conv_b(dist))
        return x * gamma + beta


class CLADE(nn.Module):
    """norm(x) * gamma[class] + beta[class], SPADE's interface: `seg` is the one-hot label map,
    followed by the 2 distance channels when `positional`; both are resized to x by nearest
    neighbour, as in SPADE."""

    def __init__(
        self, norm: str, channels: int, label_nc: int, switch_stats: Sequence[str], positional: bool
    ) -> None:
        super().__init__()
        self.label_nc = label_nc
        self.param_free_norm = param_free_norm(norm, channels, switch_stats)
        self.class_affine = ClassAffine(channels, label_nc, positional)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        return self.class_affine(normalized, seg[:, : self.label_nc].argmax(1), seg[:, self.label_nc :])
