"""Generators: SPADE's (the label map modulates every block), CLADE's (SPADE's with class-adaptive
norms), OASIS's (SPADE's blocks, with noise beside the label map everywhere it enters), Gorrepati &
Lau's variant of SPADE's whose upsamplings are unpoolings guided by a max-pooling encoder of the
label map, and pix2pixHD's global generator (the label map is only the input; the classic baseline
of the SPADE paper)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.architecture import SPADE_UPSAMPLINGS
from pipeline.models.blocks import ResnetBlock, SPADEResBlock, conv_norm
from pipeline.models.normalization import CLADE, SPADE
from pipeline.positions import distance_maps


class SPADEGenerator(nn.Module):
    """From a 16*ngf-channel grid of side resolution / 2**upsamplings, SPADE residual blocks
    upsample to the output while halving channels down to ngf. Without a VAE the grid is a
    conv of the downsampled label map; with one it is a linear map of z.

    `class_adaptive`: CLADE's generator (Tan et al. 2021), every SPADE norm a CLADE norm;
    `positional` adds its intra-class positional encoding: the distance map of the label map
    (pipeline.positions), computed here from `seg` so that every caller (training, synthesis, the
    editor) gives it the map it encodes, and the discriminator never sees it."""

    def __init__(
        self,
        label_nc: int,
        resolution: int,
        ngf: int,
        norm: str,
        num_upsampling_layers: str,
        vae: bool,
        z_dim: int,
        switch_stats: Sequence[str],
        class_adaptive: bool = False,
        positional: bool = False,
    ) -> None:
        super().__init__()
        if positional and not class_adaptive:
            raise ValueError("the positional encoding is CLADE's: it needs class_adaptive")
        self.label_nc, self.ngf, self.vae, self.z_dim, self.positional = label_nc, ngf, vae, z_dim, positional
        self._last_distance_maps: tuple[weakref.ref[torch.Tensor], int, torch.Tensor] | None = None
        self.more = num_upsampling_layers in ("more", "most")
        self.most = num_upsampling_layers == "most"
        self.grid = resolution // 2 ** SPADE_UPSAMPLINGS[num_upsampling_layers]
        if vae:
            self.fc = nn.Linear(z_dim, 16 * ngf * self.grid**2)
        else:
            self.fc = nn.Conv2d(label_nc, 16 * ngf, 3, padding=1)

        def modulated_norm(channels: int) -> nn.Module:
            if class_adaptive:
                return CLADE(norm, channels, label_nc, switch_stats, positional)
            return SPADE(norm, channels, label_nc, switch_stats)

        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(fin, fout, modulated_norm)

        self.head_0 = block(16 * ngf, 16 * ngf)
        self.G_middle_0 = block(16 * ngf, 16 * ngf)
        self.G_middle_1 = block(16 * ngf, 16 * ngf)
        self.up_0 = block(16 * ngf, 8 * ngf)
        self.up_1 = block(8 * ngf, 4 * ngf)
        self.up_2 = block(4 * ngf, 2 * ngf)
        self.up_3 = block(2 * ngf, ngf)
        final = ngf
        if self.most:
            self.up_4 = block(ngf, ngf // 2)
            final = ngf // 2
        self.conv_img = nn.Conv2d(final, 3, 3, padding=1)

    def forward(
        self, seg: torch.Tensor, z: torch.Tensor | None = None, dist: torch.Tensor | None = None
    ) -> torch.Tensor:
        """seg: N x label_nc x H x W one-hot label map -> N x 3 x H x W image in [-1, 1]. `dist`:
        with the positional encoding, a distance map to use instead of seg's own (N x 2 x H x W)."""
        if self.positional:
            dist = self.distance_maps(seg) if dist is None else dist
            seg = torch.cat([seg, dist.to(seg)], 1)
        elif dist is not None:
            raise ValueError("a distance map for a generator without the positional encoding")
        if self.vae:
            if z is None:
                z = torch.randn(seg.shape[0], self.z_dim, device=seg.device)
            x = self.fc(z).view(-1, 16 * self.ngf, self.grid, self.grid)
        else:
            x = self.fc(F.interpolate(seg[:, : self.label_nc], size=(self.grid, self.grid), mode="nearest"))
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

    def distance_maps(self, seg: torch.Tensor) -> torch.Tensor:
        """seg's distance maps, made on the CPU (connected components) once per label-map tensor:
        a training step runs the generator twice on one batch (the D step's fake, the G step's),
        and at 256x256 a batch of 16 takes about 0.24 s. Kept with a weak reference to `seg` and
        its version, so that another tensor, or this one changed in place, is never taken for it.
        Synthesis (inference mode, whose tensors have no version) calls once per batch: no memo."""
        if seg.is_inference():
            return distance_maps(seg.argmax(1))
        last = self._last_distance_maps
        if last is None or last[0]() is not seg or last[1] != seg._version:
            last = self._last_distance_maps = (weakref.ref(seg), seg._version, distance_maps(seg.argmax(1)))
        return last[2]


class OASISGenerator(nn.Module):
    """OASIS's generator (Sushko et al. 2021): from 16 x ngf channels on a grid of side resolution /
    32, six SPADE residual blocks whose outputs have 16, 16, 8, 4, 2 and 1 x ngf channels, each but
    the last followed by a nearest-neighbour upsampling; no encoder. Its 3D noise: a z_dim vector per image, copied over
    every pixel and put before the label map's channels, so that the first conv (of the label map
    resized to the grid) and every SPADE norm see both."""

    WIDTHS = (16, 16, 16, 8, 4, 2, 1)

    def __init__(
        self, label_nc: int, resolution: int, ngf: int, norm: str, z_dim: int, switch_stats: Sequence[str]
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.grid = resolution // 2 ** (len(self.WIDTHS) - 2)
        widths = [width * ngf for width in self.WIDTHS]
        self.fc = nn.Conv2d(z_dim + label_nc, widths[0], 3, padding=1)

        def modulated_norm(channels: int) -> nn.Module:
            return SPADE(norm, channels, z_dim + label_nc, switch_stats)

        self.body = nn.ModuleList(SPADEResBlock(fin, fout, modulated_norm) for fin, fout in zip(widths, widths[1:]))
        self.conv_img = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """seg: N x label_nc x H x W one-hot label map, z: N x z_dim (drawn from N(0, I) when
        None) -> N x 3 x H x W image in [-1, 1]."""
        if z is None:
            z = torch.randn(seg.shape[0], self.z_dim, device=seg.device)
        seg = torch.cat([z.to(seg)[:, :, None, None].expand(-1, -1, *seg.shape[2:]), seg], 1)
        x = self.fc(F.interpolate(seg, size=(self.grid, self.grid), mode="nearest"))
        for index, block in enumerate(self.body):
            x = block(x if index == 0 else _up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class MaxPoolEncoder(nn.Module):
    """Gorrepati & Lau's added downsampling path, VGG-style as in PhotoWCT's encoder: at each level a
    3x3 conv and ReLU, then a 2x2 max pool that records where each maximum was. It sees the
    one-hot label map at full resolution and halves it five times; its widths (2, 4, 8, 16, 16
    x ngf from full resolution down) are those of the generator's activations that each
    unpooling will scatter with these indices."""

    WIDTHS = (2, 4, 8, 16, 16)

    def __init__(self, label_nc: int, ngf: int) -> None:
        super().__init__()
        widths = [label_nc] + [w * ngf for w in self.WIDTHS]
        self.convs = nn.ModuleList(nn.Conv2d(fin, fout, 3, padding=1) for fin, fout in zip(widths, widths[1:]))

    def forward(self, seg: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> the features at 1/32 of the resolution, and the max-pool indices of each level,
        full resolution first. In fp32 even under autocast: which element of a window is the
        largest is a discrete choice that bf16's rounding would flip where two are close, and a
        flipped index moves an activation to another pixel (measured at 64x64, ngf 8: the
        output's mean |bf16 - fp32| is 0.05 with a bf16 encoder, 0.003 with this one)."""
        x, indices = seg.float(), []
        with torch.autocast(seg.device.type, enabled=False):
            for conv in self.convs:
                x, where = F.max_pool2d(F.relu(conv(x)), 2, return_indices=True)
                indices.append(where)
        return x, indices


class SPADEUnpoolGenerator(SPADEGenerator):
    """Gorrepati & Lau's novel generator: SPADE's ("normal" depth, no VAE) with its first four
    upsamplings replaced by max-unpooling with the indices of a max-pooling encoder of the
    label map (PhotoWCT's guided upsampling), each followed by its SPADE residual block and no
    extra plain convs; the last upsampling stays nearest-neighbour, as in the paper. The
    encoder's 1/32-scale features, through a 3x3 conv, replace SPADE's conv of the downsampled
    label map as the first block's input."""

    def __init__(
        self, label_nc: int, resolution: int, ngf: int, norm: str, switch_stats: Sequence[str]
    ) -> None:
        super().__init__(label_nc, resolution, ngf, norm, "normal", vae=False, z_dim=0, switch_stats=switch_stats)
        self.encoder = MaxPoolEncoder(label_nc, ngf)
        self.fc = nn.Conv2d(16 * ngf, 16 * ngf, 3, padding=1)

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        features, indices = self.encoder(seg)
        x = self.head_0(self.fc(features), seg)
        x = self.G_middle_0(_unpool(x, indices[4]), seg)
        x = self.G_middle_1(x, seg)
        x = self.up_0(_unpool(x, indices[3]), seg)
        x = self.up_1(_unpool(x, indices[2]), seg)
        x = self.up_2(_unpool(x, indices[1]), seg)
        x = self.up_3(_up(x), seg)  # indices[0] unused: the last upsampling stays
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def _unpool(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return F.max_unpool2d(x, indices.to(memory_format=torch.contiguous_format), 2)


class Pix2PixHDGenerator(nn.Module):
    """pix2pixHD's global generator: 7x7 conv, strided downsampling, residual blocks, transposed
    upsampling, 7x7 conv; instance norm after each conv but the last. `unnormalized_first`
    removes the first n instance norms (a variant: the conv keeps its bias there)."""

    def __init__(
        self, label_nc: int, ngf: int, n_downsample: int, n_blocks: int, unnormalized_first: int
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
