"""What a model's networks train with: the losses of one generator update and of one
discriminator update. The training step (pipeline.train.train_step) optimises whatever the
objective returns and knows nothing else of it, so a model family with another discriminator and
other losses (OASIS's per-pixel segmenter, say) brings an objective of its own, with the same two
methods, its LOSSES (the training log's columns) and the loss the health watch follows; and
`build_objective` picks it for the model."""

from __future__ import annotations

import contextlib
from typing import ClassVar, Protocol

import torch

from pipeline.config import ModelConfig, TrainingConfig
from pipeline.distributed import World
from pipeline.models.encoder import sample_z
from pipeline.models.loss import (
    VGGLoss,
    class_occurrence,
    d_hinge_loss,
    feature_matching_loss,
    g_hinge_loss,
    imagenet_vgg19_features,
    kld_loss,
    labelmix_loss,
    labelmix_mask,
    n_plus_one_loss,
    split_scores,
)
from pipeline.models.networks import Networks


class Objective(Protocol):
    LOSSES: ClassVar[tuple[str, ...]]
    # The discriminator's loss on fakes, which pipeline.health watches for a discriminator that
    # rejects every fake.
    FAKE_LOSS: ClassVar[str]

    def generator_losses(self, seg: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def discriminator_losses(
        self, seg: torch.Tensor, real: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]: ...


def build_objective(model: ModelConfig, networks: Networks, device: torch.device, world: World) -> Objective:
    """What `model` trains with: OASIS's generator with its own objective, every other generator
    with SPADE's."""
    if model.generator == "oasis":
        return OASISObjective.create(model, networks, device, world)
    return SPADEObjective.create(model, networks, device, world)


def batch_noise(
    world: World, count: int, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Standard normal noise for this process's `count` images: every process draws it for the
    whole global batch and takes its share, so that it is what one process would draw."""
    noise = torch.randn((count * world.size, *shape), dtype=dtype, device=device)
    return noise[world.share(len(noise))]


def discriminate(discriminator, seg: torch.Tensor, fake: torch.Tensor, real: torch.Tensor):
    """D's outputs for (label map, fake) and (label map, real) pairs, from one batched pass as
    in NVlabs' code."""
    pairs = torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0)
    return split_scores(discriminator(pairs), len(fake))


class SPADEObjective:
    """SPADE's objective as NVlabs trains it (Park et al. 2019): the generator minimises the
    hinge GAN loss, feature matching over the discriminator's features, the VGG19 perceptual loss
    and, for VAE models, the KL divergence of the encoder's posterior; the discriminator
    minimises the hinge loss, on a fake made again by the updated generator. pix2pixHD's
    generator, the paper's baseline, trains with the same objective.

    On several processes (`world`; networks wrapped in DistributedDataParallel, which averages
    gradients) each takes its share of the batch. The mean losses need nothing more; the KLD,
    a sum over the batch, is scaled by the world size so that the averaged gradient is the sum's."""

    LOSSES = ("G_gan", "G_feat", "G_vgg", "G_kld", "D_real", "D_fake")
    FAKE_LOSS = "D_fake"

    def __init__(self, networks: Networks, cfg: TrainingConfig, vgg: VGGLoss | None, world: World) -> None:
        self.networks, self.cfg, self.vgg, self.world = networks, cfg, vgg, world

    @classmethod
    def create(cls, model: ModelConfig, networks: Networks, device: torch.device, world: World) -> "SPADEObjective":
        """With torchvision's ImageNet VGG19 on `device` where the VGG loss is on."""
        cfg = model.training
        vgg = VGGLoss(imagenet_vgg19_features()).to(device) if cfg.vgg and cfg.lambda_vgg > 0 else None
        return cls(networks, cfg, vgg, world)

    def generate(self, seg: torch.Tensor, real: torch.Tensor):
        """A fake for the label maps `seg`, and for VAE models the encoder's (mu, logvar) of the
        real images, from which z is drawn (reparameterised); None for the others. Every process
        draws the noise of the whole global batch and takes its share, so z is what one process
        would draw."""
        generator, encoder = self.networks.generator, self.networks.encoder
        if encoder is None:
            return generator(seg), None
        mu, logvar = encoder(real)
        noise = batch_noise(self.world, len(mu), mu.shape[1:], mu.device, mu.dtype)
        return generator(seg, sample_z(mu, logvar, noise)), (mu, logvar)

    def generator_losses(self, seg: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, zero = self.cfg, torch.zeros((), device=seg.device)
        # D's gradients from the G step are thrown away: no all-reduce for them.
        with getattr(self.networks.discriminator, "no_sync", contextlib.nullcontext)():
            fake, posterior = self.generate(seg, real)
            kld = zero
            if posterior is not None:
                kld = kld_loss(*(t.float() for t in posterior)) * cfg.lambda_kld * self.world.size
            fake_scores, real_scores = discriminate(self.networks.discriminator, seg, fake, real)
            return {
                "G_gan": g_hinge_loss(fake_scores),
                "G_feat": feature_matching_loss(real_scores, fake_scores) * cfg.lambda_feat,
                "G_vgg": self.vgg(fake.float(), real) * cfg.lambda_vgg if self.vgg is not None else zero,
                "G_kld": kld,
            }

    def discriminator_losses(
        self, seg: torch.Tensor, real: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The D losses and the fake they judged."""
        with torch.no_grad():
            fake = self.generate(seg, real)[0].detach()
        fake_scores, real_scores = discriminate(self.networks.discriminator, seg, fake, real)
        d_real, d_fake = d_hinge_loss(real_scores, fake_scores)
        return {"D_real": d_real, "D_fake": d_fake}, fake


class OASISObjective:
    """OASIS's objective (Sushko et al. 2021): adversarial supervision only. The discriminator
    segments each image into the label map's classes plus "fake"; the generator minimises the
    class-balanced cross-entropy of its fakes' segmentation against their label map (the VGG loss
    is an option of the authors', off by default), and the discriminator that of the real images
    plus "fake" everywhere on a fake made again by the updated generator, plus LabelMix: its
    logits of a real-fake mix cut along the classes must be the same mix of its logits of each.

    On several processes each takes its share of the batch as one process would: the generator's
    noise is drawn for the whole batch by every process, which takes its share; the class balance
    and LabelMix's coins count the classes of the whole batch, so that every process draws as many
    coins and the random draws stay in step."""

    LOSSES = ("G_adv", "G_vgg", "D_fake", "D_real", "D_labelmix")
    FAKE_LOSS = "D_fake"

    def __init__(self, networks: Networks, cfg: TrainingConfig, z_dim: int, vgg: VGGLoss | None, world: World):
        self.networks, self.cfg, self.z_dim, self.vgg, self.world = networks, cfg, z_dim, vgg, world

    @classmethod
    def create(cls, model: ModelConfig, networks: Networks, device: torch.device, world: World) -> "OASISObjective":
        cfg = model.training
        vgg = VGGLoss(imagenet_vgg19_features()).to(device) if cfg.vgg and cfg.lambda_vgg > 0 else None
        return cls(networks, cfg, model.z_dim, vgg, world)

    def generate(self, seg: torch.Tensor) -> torch.Tensor:
        return self.networks.generator(seg, batch_noise(self.world, len(seg), (self.z_dim,), seg.device))

    def generator_losses(self, seg: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        zero = torch.zeros((), device=seg.device)
        occurrence = self.world.sum(class_occurrence(seg))
        # D's gradients from the G step are thrown away: no all-reduce for them.
        with getattr(self.networks.discriminator, "no_sync", contextlib.nullcontext)():
            fake = self.generate(seg)
            return {
                "G_adv": n_plus_one_loss(self.networks.discriminator(fake)[0], seg, True, occurrence),
                "G_vgg": self.vgg(fake.float(), real) * self.cfg.lambda_vgg if self.vgg is not None else zero,
            }

    def discriminator_losses(
        self, seg: torch.Tensor, real: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The D losses and the fake they judged."""
        discriminator, occurrence = self.networks.discriminator, self.world.sum(class_occurrence(seg))
        with torch.no_grad():
            fake = self.generate(seg).detach()
        mask = labelmix_mask(seg, occurrence)  # the authors draw it after D's first two passes: no draw between
        fake_logits, real_logits, mixed_logits = discriminator(fake, real, mask * real + (1 - mask) * fake)
        return {
            "D_fake": n_plus_one_loss(fake_logits, seg, False, occurrence),
            "D_real": n_plus_one_loss(real_logits, seg, True, occurrence),
            "D_labelmix": labelmix_loss(mask, mixed_logits, fake_logits, real_logits) * self.cfg.lambda_labelmix,
        }, fake
