"""A trained model as training leaves it (results/models/{model}/generator.pt): its settings and
the weights of the networks synthesis needs, the generator and, for VAE models, the encoder. The
one module that writes the file and the one that reads it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from pipeline.config import ModelConfig
from pipeline.errors import PipelineError
from pipeline.files import atomic_path
from pipeline.models.architecture import NETWORK_FORMAT
from pipeline.models.networks import Networks, build


def save_trained(path: str | os.PathLike, model: ModelConfig, networks: Networks) -> None:
    weights = {
        "format": NETWORK_FORMAT,
        "model": dataclasses.asdict(model),
        "generator": networks.generator.state_dict(),
        "encoder": networks.encoder.state_dict() if networks.encoder is not None else None,
    }
    with atomic_path(path) as tmp:
        torch.save(weights, tmp)


def load_trained(path: str | os.PathLike, device: torch.device) -> tuple[ModelConfig, Networks]:
    """A trained model's settings and networks (generator and encoder in eval mode, on `device`;
    the discriminator as built, untrained: synthesis does not use it)."""
    saved = _read(Path(path))
    model = ModelConfig.from_settings(saved["model"])
    networks = build(model)
    networks.generator.load_state_dict(saved["generator"])
    if networks.encoder is not None:
        networks.encoder.load_state_dict(saved["encoder"])
        networks.encoder.to(device).eval()
    networks.generator.to(device).eval()
    return model, networks


def load_settings(path: str | os.PathLike) -> ModelConfig:
    """The settings a trained model was trained with."""
    return ModelConfig.from_settings(_read(Path(path))["model"])


def _read(path: Path) -> dict:
    if not path.is_file():
        raise PipelineError(f"{path}: no trained generator (train the model first)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("format") != NETWORK_FORMAT:
        raise PipelineError(
            f"{path}: written by another version of the pipeline (network format {saved.get('format', 1)}, "
            f"this one reads {NETWORK_FORMAT}); train the model again (snakemake reruns its train job)"
        )
    return saved
