"""A face parser for procedural faces (tests only): facexlib's BiSeNet trained on CPU on
tests/procedural_faces.py drawings with their exact labels, saved as a plain state dict that the
pipeline loads through `parsing.weights` exactly as it loads the pretrained file.

Training never sees the seeds the end-to-end test runs the pipeline on (those are below
TRAIN_SEED_START). Half the batches are shrunk to the working resolution and blown back up, as
the pipeline does to real and synthesised test images before re-segmenting them.

The result is cached under a key that hashes the generator's source, this file and the
settings, so it is retrained exactly when one of them changes.

    python tests/procedural_parser.py CACHE_DIR     # prints the weights path
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from facexlib.parsing.bisenet import BiSeNet

from pipeline.files import atomic_path
from pipeline.labelmaps import NUM_CLASSES
from pipeline.parse.parser import IMAGENET_MEAN, IMAGENET_STD
from procedural_faces import SIZE, generator_digest, procedural_face

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
    for step in range(cfg.steps):
        images, labels = _batch(step, cfg)
        loss = sum(F.cross_entropy(head, labels) for head in model(images))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            print(f"parser step {step + 1}/{cfg.steps} loss {loss.item():.3f} ({time.monotonic() - started:.0f} s)", flush=True)
    return model.eval().state_dict()


def cache_key(cfg: ParserTraining) -> str:
    parts = [generator_digest(), hashlib.sha256(Path(__file__).read_bytes()).hexdigest(), json.dumps(asdict(cfg), sort_keys=True)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cached_parser(cache_dir: str | os.PathLike, cfg: ParserTraining = ParserTraining()) -> Path:
    """The weights file for `cfg`, trained now unless the cache already holds it."""
    path = Path(cache_dir) / f"procedural_bisenet_{cache_key(cfg)}.pth"
    if not path.exists():
        with atomic_path(path) as tmp:
            torch.save(train_parser(cfg), tmp)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--steps", type=int, default=ParserTraining.steps)
    args = parser.parse_args()
    print(cached_parser(args.cache_dir, ParserTraining(steps=args.steps)))
