"""What the face editor's page asks of a run: its trained models (kept on one device), its
test faces, and, when its weights are there, the face parser; every input checked and bounded.
The HTTP side is `pipeline.editor.server`.

A label grid is the page's label map: a square of class indices, of any side the pipeline
writes (parsing.size), resized to each model's working resolution as synthesis resizes a
label map file (nearest neighbour). Syntheses are those of `pipeline.synthesize`: VAE models
take z from the prior, seeded by the page's seed, or with a style image from the encoder's
posterior for it; OASIS draws its noise seeded by the page's seed too; the other generators
have no noise input, so the seed does not change them.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pipeline.config import ModelConfig
from pipeline.data.split import read_split
from pipeline.errors import PipelineError
from pipeline.images import ImageReadError, load_rgb, png_bytes
from pipeline.labelmaps import CLASSES, NUM_CLASSES, read_label
from pipeline.layout import ModelFiles, Results
from pipeline.models.networks import Networks
from pipeline.models.trained import load_trained
from pipeline.pairs import resize_labels, working_image
from pipeline.parse.manifest import read_manifests
from pipeline.parse.parser import FaceParser, load_for_parsing
from pipeline.synthesize import generate_faces, seeded_noise

# Label grids are square, from a small drawing to the largest parsing.size the config allows.
MIN_LABEL_SIDE, MAX_LABEL_SIDE = 16, 2048
# Uploaded photos and style images, checked from the file's header before anything is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
# Requests that may wait for a busy model (or the parser) behind the one it is running.
MAX_WAITING = 4
MAX_SEED = 2**31 - 1
# The side of a new blank label map, and of the thumbnails of test photos and style images.
BLANK_SIDE = 256
THUMBNAIL_SIDE = 256
# VAE noise is seeded as `pipeline.synthesize` seeds each image's, by (seed, image id); every
# synthesis of the editor uses this id, so that its z depends on the page's seed alone.
EDITOR_IMAGE_ID = "editor"


class EditorRequestError(PipelineError):
    """A request the editor refuses; its one-line message is shown in the page."""

    status = 400


class UnknownName(EditorRequestError):
    """A model or test face the run does not have."""

    status = 404


class Busy(EditorRequestError):
    """As many requests as may wait are already waiting."""

    status = 503


class Upload(io.BytesIO):
    """Uploaded bytes, which Pillow reads as a file and the pipeline's readers name, in their
    one-line errors, by what they are ("uploaded label map: class index 200 out of range")."""

    def __init__(self, data: bytes, what: str) -> None:
        super().__init__(data)
        self.what = what

    def __str__(self) -> str:
        return self.what

    __repr__ = __str__


class WorkQueue:
    """One job at a time, in arrival order, with at most `max_waiting` more waiting: a request
    past that is refused at once (Busy) rather than left to pile up behind a slow model."""

    def __init__(self, what: str, max_waiting: int = MAX_WAITING) -> None:
        self.what, self.max_waiting = what, max_waiting
        self._turns: deque[object] = deque()  # the running job's ticket first, then the waiting ones
        self._changed = threading.Condition()

    @contextmanager
    def turn(self) -> Iterator[None]:
        ticket = object()
        with self._changed:
            if len(self._turns) > self.max_waiting:
                raise Busy(f"{self.what}: {self.max_waiting} requests already waiting; try again when they are done")
            self._turns.append(ticket)
            self._changed.wait_for(lambda: self._turns[0] is ticket)
        try:
            yield
        finally:
            with self._changed:
                self._turns.popleft()
                self._changed.notify_all()


def image_size(data: bytes, what: str) -> tuple[int, int]:
    """An uploaded image's width and height, read from its header only."""
    try:
        with Image.open(Upload(data, what)) as image:
            return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{what}: not a readable image ({err})") from None


def check_label_side(width: int, height: int, what: str) -> None:
    if width != height or not MIN_LABEL_SIDE <= width <= MAX_LABEL_SIDE:
        raise EditorRequestError(
            f"{what}: {width}x{height} pixels; the editor takes square label maps of "
            f"{MIN_LABEL_SIDE} to {MAX_LABEL_SIDE} pixels a side"
        )


def decode_label_map(data: bytes) -> np.ndarray:
    """A label map PNG as the pipeline writes them (pixel values are class indices), checked."""
    what = "uploaded label map"
    check_label_side(*image_size(data, what), what)
    return read_label(Upload(data, what))


def label_grid(raw: bytes, side: int) -> np.ndarray:
    """The page's painted label map: side x side class indices, one byte each, checked."""
    what = "painted label map"
    check_label_side(side, side, what)
    if len(raw) != side * side:
        raise EditorRequestError(f"{what}: {len(raw)} bytes for a {side}x{side} map ({side * side} expected)")
    labels = np.frombuffer(raw, np.uint8).reshape(side, side)
    if labels.max() >= NUM_CLASSES:
        raise EditorRequestError(f"{what}: class index {labels.max()} out of range 0-{NUM_CLASSES - 1}")
    return labels


def checked_image(data: bytes, what: str) -> Upload:
    """`data` for the pipeline's image readers, once its header shows a readable image of at most
    MAX_IMAGE_PIXELS (so that a small file cannot decode into gigabytes)."""
    width, height = image_size(data, what)
    if width * height > MAX_IMAGE_PIXELS:
        raise EditorRequestError(
            f"{what}: {width}x{height} pixels, more than the editor takes ({MAX_IMAGE_PIXELS:,} pixels)"
        )
    return Upload(data, what)


def thumbnail_png(image: Image.Image) -> bytes:
    """`image` shrunk to fit THUMBNAIL_SIDE, as PNG bytes."""
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BICUBIC)
    return png_bytes(image)


@dataclass
class EditorModel:
    """A trained model on the editor's device, and the queue of its syntheses."""

    name: str
    config: ModelConfig
    networks: Networks
    queue: WorkQueue

    @property
    def vae(self) -> bool:
        return self.networks.encoder is not None

    def describe(self) -> dict:
        return {
            "name": self.name,
            "generator": self.config.generator,
            "resolution": self.config.training.resolution,
            "vae": self.vae,
            "noise": self.config.draws_noise,
        }


@dataclass(frozen=True)
class Face:
    """A test face of the run: its photo and its label map."""

    image_id: str
    photo: Path
    labels: Path


def read_test_faces(results: Path) -> list[Face]:
    """The run's test faces with their label maps, from the parsing manifests
    (results/labels/shards/{shard}.csv, in shard order); none before parsing has run. Only the
    test faces of the current split (results/data/split.csv), each once: shards of an earlier,
    larger split or another shard size stay on disk. Their relative paths are the workflow's,
    from the directory that holds results/, wherever the editor was started."""
    layout = Results(str(results))
    rows = read_manifests(layout.shard_manifests(), split="test")
    split = Path(layout.split)
    if split.exists():
        test_ids = {row.image_id for row in read_split(split) if row.split == "test"}
        rows = [row for row in rows if row["image_id"] in test_ids]
    first: dict[str, dict[str, str]] = {}
    for row in rows:  # each id once: its row in the lowest shard
        first.setdefault(row["image_id"], row)
    workdir = results.parent
    return [Face(row["image_id"], workdir / row["path"], workdir / row["label"]) for row in first.values()]


class Editor:
    """A run's models, test faces and optional face parser, answering the page's requests."""

    def __init__(
        self,
        models: list[EditorModel],
        faces: list[Face],
        device: torch.device,
        parser: FaceParser | None,
        parser_note: str,
    ) -> None:
        self.models = {model.name: model for model in models}
        self.faces = {face.image_id: face for face in faces}
        self.device = device
        self.parser, self.parser_note = parser, parser_note
        self.parser_queue = WorkQueue("the face parser")

    @classmethod
    def load(
        cls, results: Path, device: torch.device, parser_weights: Path, parser_size: int, parser_amp: bool = True
    ) -> "Editor":
        """Every results/models/*/generator.pt on `device`; the parser when its weights exist, in
        fp16 on CUDA where `parser_amp` asks for it (as parsing.amp does for the parse stage)."""
        layout = Results(str(results))
        weights = layout.trained_models()
        if not weights:
            raise PipelineError(
                f"{Path(layout.models)}: no trained model (*/{ModelFiles.GENERATOR}); train one first, e.g. "
                "snakemake train_all"
            )
        models = []
        for path in weights:
            config, networks = load_trained(path, device)
            models.append(EditorModel(path.parent.name, config, networks, WorkQueue(path.parent.name)))
        parser, note = None, f"no face parser weights at {parser_weights} (--parser-weights): photos cannot be parsed"
        if parser_weights.is_file():
            parser = FaceParser(parser_weights, parser_size, device.type, parser_amp)
            note = f"photos are parsed by the BiSeNet of {parser_weights} at {parser_size}x{parser_size}"
        return cls(models, read_test_faces(results), device, parser, note)

    def info(self) -> dict:
        """What the page needs to draw itself: classes, models, test faces, parser, limits."""
        return {
            "classes": [{"index": c.index, "name": c.name, "color": "#%02x%02x%02x" % c.color} for c in CLASSES],
            "models": [model.describe() for model in self.models.values()],
            "faces": list(self.faces),
            "parser": {"available": self.parser is not None, "note": self.parser_note},
            "device": str(self.device),
            "blank_side": BLANK_SIDE,
            "max_seed": MAX_SEED,
        }

    def face(self, image_id: str) -> Face:
        if image_id not in self.faces:
            raise UnknownName(f"no test face {image_id!r} in this run")
        return self.faces[image_id]

    def face_labels(self, image_id: str) -> np.ndarray:
        face = self.face(image_id)
        labels = read_label(face.labels)
        check_label_side(*labels.shape[::-1], str(face.labels))
        return labels

    def face_photo(self, image_id: str) -> bytes:
        """The test face's photo as a PNG thumbnail, beside the label map for reference."""
        return thumbnail_png(load_rgb(self.face(image_id).photo))

    def style_thumbnail(self, data: bytes) -> bytes:
        """A style image's PNG thumbnail; refuses what synthesis would refuse."""
        return thumbnail_png(load_rgb(checked_image(data, "style image")))

    def parse(self, photo: bytes) -> np.ndarray:
        """An uploaded photo's label map at the parser's size."""
        if self.parser is None:
            raise EditorRequestError(self.parser_note)
        # Decoded in its turn, so that the queue's bound also bounds the memory of decoded photos.
        with self.parser_queue.turn():
            image = load_for_parsing(checked_image(photo, "uploaded photo"), self.parser.size)
            return self.parser(torch.from_numpy(image).permute(2, 0, 1)[None])[0].numpy()

    def synthesize(self, model_name: str, labels: np.ndarray, seed: int, style: bytes | None = None) -> np.ndarray:
        """One face (R x R x 3 uint8, R the model's working resolution) from a label grid."""
        if model_name not in self.models:
            raise UnknownName(f"no model {model_name!r} in this run")
        model = self.models[model_name]
        if not 0 <= seed <= MAX_SEED:
            raise EditorRequestError(f"seed {seed}: out of range 0-{MAX_SEED}")
        if style is not None and not model.vae:
            raise EditorRequestError(f"{model_name} has no encoder: a style image is for VAE models")
        resolution = model.config.training.resolution
        # Decoded in its turn, so that the queue's bound also bounds the memory of decoded images.
        with model.queue.turn():
            noise = photos = None
            if model.config.draws_noise:
                noise = seeded_noise(model.config.z_dim, seed, [EDITOR_IMAGE_ID], self.device)
            if style is not None:
                photos = working_image(checked_image(style, "style image"), resolution)[None]
            working = torch.from_numpy(resize_labels(labels, resolution))[None]
            return generate_faces(model.networks, working, self.device, noise, photos)[0]
