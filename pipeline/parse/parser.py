"""Run the face parser on any list of images, writing one label map per image.

Preprocessing is facexlib's reference inference (inference/inference_parsing.py): 8-bit RGB,
cv2 bilinear resize to size x size, /255, ImageNet mean/std, first output of the network
(the full-resolution head), argmax over classes.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from pipeline.devices import resolve_device
from pipeline.images import ImageReadError, load_rgb
from pipeline.labelmaps import label_provenance, write_label
from pipeline.parse.weights import load_bisenet
from pipeline.progress import progress

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_for_parsing(path: str | os.PathLike, size: int) -> np.ndarray:
    """An image as the parser sees it before normalisation: size x size x 3 uint8 RGB."""
    rgb = np.asarray(load_rgb(path))
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)


class FaceParser:
    """facexlib's BiSeNet on one device. `provenance` names the weights, input size and
    precision, so a label map made by another parser is never mistaken for this one's."""

    def __init__(self, weights: str | os.PathLike, size: int, device: str = "auto", amp: bool = True) -> None:
        self.size = size
        self.device = resolve_device(device, "config key parsing.device")
        self.half = amp and self.device.type == "cuda"
        model, sha256 = load_bisenet(weights)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self.provenance = f"facexlib BiSeNet sha256:{sha256} size:{size} {'fp16' if self.half else 'fp32'}"

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """N x 3 x size x size uint8 RGB -> N x size x size uint8 class indices, on the CPU."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        x = x.sub_(self.mean).div_(self.std)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            logits = self.model(x)[0]
        return logits.argmax(1).to(torch.uint8).cpu()


class _ParserInputs(Dataset):
    """Decoded, resized images for the DataLoader's workers. A bad file is passed on as its
    error message, so the main process can stop with one line naming it."""

    def __init__(self, paths: Sequence[str | os.PathLike], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, str]:
        try:
            image = load_for_parsing(self.paths[index], self.size)
        except ImageReadError as err:
            return index, torch.zeros(3, self.size, self.size, dtype=torch.uint8), str(err)
        return index, torch.from_numpy(image).permute(2, 0, 1).contiguous(), ""


def parser_inputs(
    paths: Sequence[str | os.PathLike], size: int, batch_size: int, workers: int, pin_memory: bool
) -> DataLoader:
    """Batches of (indices, N x 3 x size x size uint8 images, error messages) decoded and
    resized by `workers` processes while the caller runs the model."""
    # Each worker is a process decoding one image at a time, so OpenCV's own threads would only
    # compete. Set here, before the fork: set in a forked worker it deadlocks on the parent's pool.
    cv2.setNumThreads(1)
    return DataLoader(_ParserInputs(paths, size), batch_size=batch_size, num_workers=workers, pin_memory=pin_memory)


def parse_images(
    parser: FaceParser,
    sources: Sequence[str | os.PathLike],
    destinations: Sequence[str | os.PathLike],
    batch_size: int,
    workers: int,
    desc: str = "parse",
    label_size: int | None = None,
) -> int:
    """Write the label map of each source image to its destination; return how many were parsed.

    Label maps are at the parser's size, or resized to label_size x label_size by nearest
    neighbour (re-segmented faces are compared with label maps at their working resolution).
    A destination that already holds this parser's label map is left alone, so a finished
    list costs only a header read per image and an interrupted one resumes where it stopped.
    """
    if len(sources) != len(destinations):
        raise ValueError("sources and destinations differ in length")
    provenance = parser.provenance + (f" labels:{label_size}" if label_size else "")
    todo = [(src, Path(dst)) for src, dst in zip(sources, destinations) if label_provenance(dst) != provenance]
    if len(todo) < len(sources):
        log.info(
            "%d of %d label maps already made by this parser; skipping them", len(sources) - len(todo), len(sources)
        )
    if not todo:
        return 0
    loader = parser_inputs([src for src, _ in todo], parser.size, batch_size, workers, parser.device.type == "cuda")
    # PNG encoding runs in threads (zlib releases the GIL) so the model need not wait for it;
    # the queue of unfinished writes is bounded to keep memory flat on long lists.
    with ThreadPoolExecutor(max_workers=4) as writer, progress(total=len(todo), desc=desc, unit="img") as bar:
        pending: deque = deque()
        for indices, images, errors in loader:
            bad = next((message for message in errors if message), None)
            if bad:
                raise ImageReadError(bad)
            labels = parser(images)
            if label_size:
                labels = F.interpolate(labels[:, None].float(), size=(label_size, label_size), mode="nearest")
                labels = labels[:, 0].to(torch.uint8)
            for index, label in zip(indices.tolist(), labels.numpy()):
                pending.append(writer.submit(write_label, label, todo[index][1], provenance))
            while len(pending) > 4 * batch_size:
                pending.popleft().result()
            bar.update(len(indices))
        while pending:
            pending.popleft().result()
    return len(todo)
