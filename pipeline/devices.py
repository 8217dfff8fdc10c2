"""Which torch device a stage runs on."""

from __future__ import annotations

import torch

from pipeline.errors import PipelineError


def resolve_device(device: str, key: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; asking for CUDA without it is an error naming
    `key`, the config key or option that asked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"{key}: cuda, but torch {torch.__version__} sees no CUDA device")
    return torch.device(device)
