"""Face images and their label maps at the working resolution, as training, synthesis and the
`real` row of the metrics all see them (images resized with antialiasing, label maps by nearest
neighbour: class indices must never be blended), and the training pairs held in memory."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.distributed import World
from pipeline.files import atomic_path
from pipeline.images import load_rgb
from pipeline.labelmaps import FLIPPED_CLASS, NUM_CLASSES, read_label
from pipeline.progress import progress


def working_image(path: str | os.PathLike, resolution: int) -> np.ndarray:
    """resolution x resolution x 3 uint8 RGB; Pillow's bicubic filter antialiases when shrinking."""
    return np.array(load_rgb(path).resize((resolution, resolution), Image.Resampling.BICUBIC))


def working_labels(path: str | os.PathLike, resolution: int) -> np.ndarray:
    """resolution x resolution uint8 class indices."""
    return resize_labels(read_label(path), resolution)


def resize_labels(labels: np.ndarray, resolution: int) -> np.ndarray:
    """HxW uint8 class indices -> resolution x resolution, by nearest neighbour."""
    return np.array(Image.fromarray(labels).resize((resolution, resolution), Image.Resampling.NEAREST))


def _pair(args: tuple[str, str, int]) -> tuple[np.ndarray, np.ndarray]:
    image_path, label_path, resolution = args
    return working_image(image_path, resolution), working_labels(label_path, resolution)


@dataclass
class PairedFaces:
    """All pairs in memory as uint8 tensors: images N x 3 x R x R, labels N x R x R."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def load(
        cls, image_paths: Sequence[str], label_paths: Sequence[str], resolution: int, workers: int
    ) -> "PairedFaces":
        if not image_paths:
            raise ValueError("no images to load")
        images = torch.empty(len(image_paths), 3, resolution, resolution, dtype=torch.uint8)
        labels = torch.empty(len(image_paths), resolution, resolution, dtype=torch.uint8)
        jobs = [(image, label, resolution) for image, label in zip(image_paths, label_paths)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pairs = pool.map(_pair, jobs, chunksize=16)
            for index, (image, label) in enumerate(progress(pairs, total=len(jobs), desc="load", unit="img")):
                images[index] = torch.from_numpy(image).permute(2, 0, 1)
                labels[index] = torch.from_numpy(label)
        return cls(images, labels)

    @classmethod
    def load_shared(
        cls,
        image_paths: Sequence[str],
        label_paths: Sequence[str],
        resolution: int,
        workers: int,
        path: Path,
        builder: bool,
        barrier: Callable[[], None],
    ) -> "PairedFaces":
        """The pairs, loaded once per node by its `builder` process and shared through a file at
        `path` (node-local, unique to the launch) that every process maps: the node holds one
        copy, not one per process. The others wait for the file to appear (it is renamed into
        place whole), however long the loading takes: a builder that dies ends the launch
        (torchrun stops its processes), so the wait is bounded. `barrier` waits for all
        processes; once all have mapped the file it is unlinked, so it outlives the run only
        if the node is killed in between (the caller removes such leftovers)."""
        count, pixels = len(image_paths), resolution * resolution
        if builder:
            loaded = cls.load(image_paths, label_paths, resolution, workers)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(loaded.images.numpy().data)  # the tensors' memory, not a copy of it
                    f.write(loaded.labels.numpy().data)
            del loaded  # the node's one copy is now the file's
        while not path.exists():
            time.sleep(1)
        mapped = torch.from_file(str(path), shared=True, size=count * 4 * pixels, dtype=torch.uint8)
        barrier()
        if builder:
            path.unlink()
        images = mapped[: count * 3 * pixels].view(count, 3, resolution, resolution)
        return cls(images, mapped[count * 3 * pixels :].view(count, resolution, resolution))

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: torch.Tensor, flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images and labels at `indices`, mirrored where `flips` is true, with left and
        right classes swapped in the mirrored label maps."""
        images, labels = self.images[indices], self.labels[indices]
        if flips.any():
            images[flips] = images[flips].flip(-1)
            labels[flips] = torch.from_numpy(FLIPPED_CLASS)[labels[flips].long()].flip(-1)
        return images, labels


def load_pairs(
    image_paths: Sequence[str], label_paths: Sequence[str], resolution: int, workers: int, world: World, name: str
) -> PairedFaces:
    """The training pairs, loaded by this process; on several processes, once per node into a
    file its processes share (70,000 faces at 256x256 are 18 GB with their label maps), named
    after `name` (a training run's key) and the launch, so that the copies this run's killed
    launches left behind are removed first."""
    if world.size == 1:
        return PairedFaces.load(image_paths, label_paths, resolution, workers)
    node_copies, prefix = Path(tempfile.gettempdir()), f"spade-faces-{name}-"
    builder = world.local_rank == 0
    if builder:
        for stale in [*node_copies.glob(prefix + "*"), *node_copies.glob(f".{prefix}*")]:
            stale.unlink(missing_ok=True)
    node_copy = node_copies / f"{prefix}{os.environ['TORCHELASTIC_RUN_ID']}.u8"
    return PairedFaces.load_shared(image_paths, label_paths, resolution, workers, node_copy, builder, world.barrier)


def to_model_inputs(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 batches -> images in [-1, 1] and one-hot label maps, as floats on `device`."""
    return images.to(device, non_blocking=True).float().div_(127.5).sub_(1), one_hot_labels(labels, device)


def one_hot_labels(labels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """N x H x W class indices -> N x classes x H x W one-hot floats on `device`."""
    labels = labels.to(device, non_blocking=True).long()
    one_hot = torch.zeros(labels.shape[0], NUM_CLASSES, *labels.shape[1:], device=device)
    return one_hot.scatter_(1, labels.unsqueeze(1), 1.0)


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] (N x 3 x H x W) -> N x H x W x 3 uint8 on the CPU."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
