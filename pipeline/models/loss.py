"""Training losses. SPADE's: hinge GAN loss over the discriminator's scales, feature matching,
VGG19 perceptual loss and the VAE's KL divergence. OASIS's: the class-balanced cross-entropy of its
segmenting discriminator's N + 1 logits, and LabelMix."""

from __future__ import annotations

import logging
import urllib.error

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

# VGG19 feature indices ending the slices relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, and the
# reference's weights for them: deeper layers count more.
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def split_scores(scores: list[list[torch.Tensor]], n_first: int) -> tuple[list, list]:
    """Discriminator outputs of a batch [first; second] -> the outputs of each part."""
    first = [[feature[:n_first] for feature in scale] for scale in scores]
    second = [[feature[n_first:] for feature in scale] for scale in scores]
    return first, second


def d_hinge_loss(
    real_scores: list[list[torch.Tensor]], fake_scores: list[list[torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator: mean(relu(1 - D(real))) and mean(relu(1 + D(fake))), each averaged over
    scales (the loss is their sum). Each scale's last output is its patch logits. Means in fp32
    (under autocast the logits may be bf16, and a mean is not among the ops autocast lifts)."""
    real = sum(F.relu(1 - scale[-1].float()).mean() for scale in real_scores) / len(real_scores)
    fake = sum(F.relu(1 + scale[-1].float()).mean() for scale in fake_scores) / len(fake_scores)
    return real, fake


def g_hinge_loss(fake_scores: list[list[torch.Tensor]]) -> torch.Tensor:
    """Generator: -mean(D(fake)), averaged over scales, in fp32."""
    return -sum(scale[-1].float().mean() for scale in fake_scores) / len(fake_scores)


def feature_matching_loss(real_scores: list[list[torch.Tensor]], fake_scores: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's intermediate features of real and fake images, summed over
    layers and averaged over scales (the caller multiplies by lambda_feat)."""
    total = 0.0
    for real, fake in zip(real_scores, fake_scores):
        for real_feature, fake_feature in zip(real[:-1], fake[:-1]):
            total = total + F.l1_loss(fake_feature, real_feature.detach())
    return total / len(real_scores)


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), summed over the batch and latent dimensions as in the
    reference (lambda_kld is tuned for that sum)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class VGGLoss(nn.Module):
    """Weighted L1 between VGG19 features of the fake and the real image. Images go in as the
    generator makes them, in [-1, 1], without ImageNet normalisation: what the reference does."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        starts = (0,) + VGG_SLICE_ENDS[:-1]
        self.slices = nn.ModuleList(features[start:end] for start, end in zip(starts, VGG_SLICE_ENDS))
        self.requires_grad_(False)
        self.eval()

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for weight, block in zip(VGG_LAYER_WEIGHTS, self.slices):
            fake, real = block(fake), block(real)
            loss = loss + weight * F.l1_loss(fake, real.detach())
        return loss


def imagenet_vgg19_features() -> nn.Sequential:
    """torchvision's ImageNet VGG19 convolutional layers, through its weights API: downloaded
    once to the torch hub cache ($TORCH_HOME/hub/checkpoints) and checked against the hash in
    the file name; loaded with weights_only=True."""
    from torchvision.models import VGG19_Weights, vgg19

    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        cache = torch.hub.get_dir() + "/checkpoints/" + weights.url.rsplit("/", 1)[-1]
        raise PipelineError(
            f"cannot get ImageNet VGG19 weights for the perceptual loss from {weights.url} to {cache} "
            f"({' '.join(str(err).split())}); put the file there, or set training.vgg: false"
        ) from None
    model = vgg19()
    model.load_state_dict(state)
    return model.features


# --- OASIS (Sushko et al. 2021): the discriminator segments, and its loss is a cross-entropy ---


def class_occurrence(seg: torch.Tensor) -> torch.Tensor:
    """Pixels of each class in a batch of one-hot label maps (label_nc)."""
    return seg.sum(dim=(0, 2, 3))


def class_balance(seg: torch.Tensor, occurrence: torch.Tensor) -> torch.Tensor:
    """OASIS's weight of each pixel in the real pixels' loss (N x H x W): the inverse of its class's
    share of the batch's pixels (`occurrence`: class_occurrence of the whole batch, over every
    process's share), scaled so that a batch whose classes present cover equal areas weighs every
    pixel 1. Rare classes (an ear, the eyes) then count as much as the skin."""
    present = (occurrence > 0).sum()
    values = occurrence.sum() * seg.shape[1]  # the batch's one-hot values, as the authors' numel
    coefficients = torch.reciprocal(occurrence) * values / (present * seg.shape[1])
    return coefficients[seg.argmax(1)]


def n_plus_one_loss(logits: torch.Tensor, seg: torch.Tensor, real: bool, occurrence: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the discriminator's label_nc + 1 logits per pixel: for a real image (and
    the generator's fakes in its own loss) each pixel's class, at logit class + 1, weighted by
    class_balance; for a fake, "fake" at logit 0, unweighted. In fp32."""
    logits = logits.float()
    if not real:
        return F.cross_entropy(logits, torch.zeros_like(seg[:, 0], dtype=torch.long))
    return (F.cross_entropy(logits, seg.argmax(1) + 1, reduction="none") * class_balance(seg, occurrence)).mean()


def labelmix_mask(seg: torch.Tensor, occurrence: torch.Tensor) -> torch.Tensor:
    """LabelMix's mask (N x 1 x H x W, 0 or 1): one coin flip from the global RNG per class present
    in the batch (`occurrence`, over every process's share, so that every process draws as many),
    in class order; a pixel takes its class's."""
    present = torch.nonzero(occurrence > 0).flatten()
    flips = torch.cat([torch.randint(0, 2, (1,), device=seg.device) for _ in present])
    lookup = torch.zeros(seg.shape[1], dtype=flips.dtype, device=seg.device)
    lookup[present] = flips
    return lookup[seg.argmax(1, keepdim=True)].to(seg.dtype)


def labelmix_loss(
    mask: torch.Tensor, mixed_logits: torch.Tensor, fake_logits: torch.Tensor, real_logits: torch.Tensor
) -> torch.Tensor:
    """LabelMix's consistency term (the caller weighs it by lambda_labelmix): the discriminator's
    logits of the mixed image against the same mix of its logits of the fake and the real image,
    mean squared; gradients flow into all three, as in the authors' code."""
    return F.mse_loss(mask * real_logits.float() + (1 - mask) * fake_logits.float(), mixed_logits.float())
