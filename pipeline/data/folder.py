"""Folder source: face images already on disk (for example an FFHQ copy), found recursively."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.errors import PipelineError
from pipeline.images import load_rgb
from pipeline.progress import progress

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def find_images(folder: str | os.PathLike) -> dict[str, Path]:
    """Map image id (the file stem) to path for every png/jpg under `folder`, in sorted order.
    Other files (an FFHQ LICENSE.txt, say) are ignored and listed in the log."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"config key data.folder: {root} is not a directory")
    images: dict[str, Path] = {}
    ignored: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(str(path.relative_to(root)))
            continue
        if path.stem in images:
            raise PipelineError(f"{path}: image id {path.stem!r} is also used by {images[path.stem]}")
        images[path.stem] = path
    if ignored:
        log.info("ignored %d files that are not png/jpg: %s", len(ignored), ", ".join(ignored[:10]))
    if not images:
        raise ConfigError(f"config key data.folder: no png/jpg images under {root}")
    return images


def verify(paths: Mapping[str, Path], workers: int, check: Callable[[Path], object] = load_rgb) -> None:
    """Run `check` on every image in `workers` threads (by default: decode it fully); the first
    failure is an error naming its file."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in progress(pool.map(check, paths.values()), total=len(paths), desc="verify", unit="img"):
            pass
