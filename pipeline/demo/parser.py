"""A face parser for procedural faces, for the offline demo: facexlib's BiSeNet trained on the
CPU on pipeline.data.procedural drawings with their exact labels, saved as a plain state dict that the
pipeline loads through `parsing.weights` exactly as it loads the pretrained file.

Training never sees the seeds the pipeline runs on (those are below TRAIN_SEED_START). Half the
batches are shrunk to the working resolution and blown back up, as the pipeline does to real and
synthesised test images before re-segmenting them.

    python -m pipeline.demo parser --out resources/weights/procedural_bisenet.pth
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from facexlib.parsing.bisenet import BiSeNet

from pipeline.data.procedural import SIZE, procedural_face
from pipeline.labelmaps import NUM_CLASSES
from pipeline.parse.parser import IMAGENET_MEAN, IMAGENET_STD
from pipeline.progress import progress

log = logging.getLogger(__name__)

TRAIN_SEED_START = 1_000_000


@dataclass(frozen=True)
class ParserTraining:
    steps: int = 400
    batch_size: int = 16
    lr: float = 2e-3
    size: int = SIZE
    low_resolution: int = 64  # the end-to-end run's working resolution
    seed: int = 0


def _batch(step: int, cfg: ParserTraining) -> tuple[torch.Tensor, torch.Tensor]:
    first = TRAIN_SEED_START + step * cfg.batch_size
    pairs = [procedural_face(seed, cfg.size) for seed in range(first, first + cfg.batch_size)]
    images = torch.from_numpy(np.stack([image for image, _ in pairs])).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(np.stack([labels for _, labels in pairs])).long()
    half = cfg.batch_size // 2
    low = F.interpolate(images[:half], size=cfg.low_resolution, mode="bicubic", antialias=True)
    images[:half] = F.interpolate(low, size=cfg.size, mode="bilinear").clamp(0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std, labels


def train_parser(cfg: ParserTraining) -> dict[str, torch.Tensor]:
    """BiSeNet trained from a seeded random start; cross-entropy on its three heads, as
    face-parsing.PyTorch trains it (without its OHEM weighting)."""
    torch.manual_seed(cfg.seed)
    model = BiSeNet(num_class=NUM_CLASSES).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps)
    started = time.monotonic()
    for step in progress(range(cfg.steps), desc="demo parser", unit="step"):
        images, labels = _batch(step, cfg)
        loss = sum(F.cross_entropy(head, labels) for head in model(images))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info("parser step %d/%d loss %.3f (%.0f s)", step + 1, cfg.steps, loss.item(), time.monotonic() - started)
    return model.eval().state_dict()
