"""facexlib's pretrained BiSeNet weights: downloaded once and verified, or a user's own file."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch
from facexlib.parsing.bisenet import BiSeNet

from pipeline.download import DownloadError, RemoteFile, RetryPolicy, fetch_one
from pipeline.errors import PipelineError
from pipeline.files import file_digest
from pipeline.labelmaps import NUM_CLASSES

log = logging.getLogger(__name__)

# facexlib v0.2.0's release file parsing_bisenet.pth.
BISENET_SIZE = 53_289_463
BISENET_SHA256 = "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"
DOWNLOAD_POLICY = RetryPolicy(retries=3, timeout_s=60, backoff_s=2)


class WeightsError(PipelineError):
    """The parser's weights cannot be obtained or loaded."""


def download_weights(
    url: str,
    path: str | os.PathLike,
    size: int = BISENET_SIZE,
    sha256: str = BISENET_SHA256,
    policy: RetryPolicy = DOWNLOAD_POLICY,
) -> Path:
    """Make `path` hold the weights file at `url` (by default facexlib's pretrained BiSeNet),
    verified by size and sha256. Bytes that do not match are deleted; an existing verified
    file is kept without a request."""
    path = Path(path)
    remote = RemoteFile("BiSeNet face-parsing weights", url, path, size, f"sha256:{sha256}")
    try:
        return fetch_one(remote, policy)
    except DownloadError as err:
        raise WeightsError(
            f"cannot get the face parser's weights from {url} to {path} (expected sha256 {sha256}, "
            f"{size} bytes): {err}. Put that file there yourself, or set parsing.weights to a copy of it"
        ) from None


def load_bisenet(path: str | os.PathLike) -> tuple[BiSeNet, str]:
    """facexlib's 19-class BiSeNet with the state dict at `path` (eval mode, on CPU), and the
    file's sha256. A file other than facexlib's release is used with a warning."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"parsing.weights {path}: no such file")
    sha256 = file_digest(path, "sha256")
    if sha256 != BISENET_SHA256:
        log.warning(
            "%s: sha256 %s is not that of facexlib's pretrained BiSeNet (%s); using it anyway",
            path,
            sha256,
            BISENET_SHA256,
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise WeightsError(f"{path}: not a loadable PyTorch state dict ({str(err).splitlines()[0]})") from None
    model = BiSeNet(num_class=NUM_CLASSES)
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, expected a BiSeNet state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise WeightsError(f"{path}: not facexlib's {NUM_CLASSES}-class BiSeNet ({detail[:300]})") from None
    return model.eval(), sha256
