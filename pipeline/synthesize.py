"""`python -m pipeline.synthesize`: faces from label maps with a trained generator.

Each image is seeded by (seed, image id), so the same label map always gives the same face,
whatever the batch. VAE models draw z from the prior (and OASIS its noise); or, with --style
IMAGE, from the encoder's posterior for that image (style-guided synthesis, as in the SPADE paper); or, with
--vae-z encode and --manifests, from the posterior of each test image's own real photo (the
test protocol of NVlabs' test.py).

    python -m pipeline.synthesize --model spade_vae --labels a.png b.png --style face.jpg --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline import cli
from pipeline.config import ModelConfig
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.images import save_png
from pipeline.layout import RESULTS
from pipeline.models.encoder import sample_z
from pipeline.models.networks import Networks
from pipeline.models.trained import load_trained
from pipeline.pairs import one_hot_labels, to_uint8_images, working_image, working_labels
from pipeline.parse.manifest import read_manifests
from pipeline.progress import progress

log = logging.getLogger("pipeline.synthesize")


def image_generator(seed: int, image_id: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def seeded_noise(z_dim: int, seed: int, image_ids: Sequence[str], device: torch.device) -> torch.Tensor:
    """N x z_dim standard normal noise on `device`, each row seeded by (seed, image id). Drawn on
    the CPU: a CUDA generator gives other numbers for the same seed, so a GPU would synthesise
    another face, and another table row, from the same (seed, image)."""
    return torch.stack([torch.randn(z_dim, generator=image_generator(seed, image_id)) for image_id in image_ids]).to(
        device
    )


@torch.inference_mode()
def generate_faces(
    networks: Networks,
    labels: torch.Tensor,
    device: torch.device,
    noise: torch.Tensor | None = None,
    photos: np.ndarray | None = None,
) -> np.ndarray:
    """N x R x R uint8 class indices at the model's working resolution -> N x R x R x 3 uint8
    faces. Models that draw noise take z = `noise` (N x z_dim); VAE models, given `photos` (N x R
    x R x 3 uint8), a sample of the encoder's posterior for each photo, drawn with that noise."""
    z = noise
    if networks.encoder is not None:
        if photos is not None:
            photos = torch.from_numpy(photos).permute(0, 3, 1, 2).to(device)
            mu, logvar = networks.encoder(photos.float().div(127.5).sub(1))
            z = sample_z(mu, logvar, noise)
    return to_uint8_images(networks.generator(one_hot_labels(labels, device), z))


def synthesize(
    model: ModelConfig,
    networks: Networks,
    label_paths: Sequence[str | os.PathLike],
    out_paths: Sequence[str | os.PathLike],
    device: torch.device,
    styles: Sequence[str | os.PathLike] | None = None,
    batch_size: int = 8,
) -> None:
    """Write one face per label map, at the model's working resolution. `styles`: for VAE
    models, one image per label map whose encoding gives z (None: z from the prior)."""
    resolution = model.training.resolution
    if styles is not None and networks.encoder is None:
        raise PipelineError(f"a style image needs a VAE model; {model.name} has no encoder")
    for start in progress(range(0, len(label_paths), batch_size), desc=f"synthesize {model.name}", unit="batch"):
        labels_chunk = label_paths[start : start + batch_size]
        outs = out_paths[start : start + batch_size]
        labels = torch.stack([torch.from_numpy(working_labels(path, resolution)) for path in labels_chunk])
        noise = photos = None
        if model.draws_noise:
            noise = seeded_noise(model.z_dim, model.training.run_seed, [Path(out).stem for out in outs], device)
        if styles is not None:
            photos = np.stack([working_image(path, resolution) for path in styles[start : start + batch_size]])
        for image, out in zip(generate_faces(networks, labels, device, noise, photos), outs):
            save_png(image, out)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.synthesize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help=f"a trained model's name: its weights are {RESULTS.model('NAME').generator}")
    which.add_argument("--weights", type=Path, help="a generator.pt written by the training stage")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, nargs="+", help="label map PNGs (class indices)")
    source.add_argument("--manifests", type=Path, nargs="+", help="parsing manifests: their test images are used")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--style", type=Path, help="VAE models: z from the encoding of this image, for every label map")
    style.add_argument(
        "--vae-z",
        choices=["prior", "encode"],
        default="prior",
        help="VAE models: z from the prior, or (with --manifests) from the encoding of each test image's real photo",
    )
    parser.add_argument("--out", "--out-dir", dest="out", type=Path, required=True, help="folder for {image_id}.png")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    device = resolve_device(args.device, "--device")
    weights = args.weights or RESULTS.model(args.model).generator
    model, networks = load_trained(weights, device)
    if args.labels:
        if args.vae_z == "encode":
            parser.error("--vae-z encode takes each test image's photo from --manifests")
        labels, photos = [str(path) for path in args.labels], None
    else:
        rows = read_manifests(args.manifests, "test")
        labels, photos = [row["label"] for row in rows], [row["path"] for row in rows]
    styles = None
    if args.style:
        styles = [args.style] * len(labels)
    elif args.vae_z == "encode" and networks.encoder is not None:
        styles = photos
    outs = [args.out / f"{Path(label).stem}.png" for label in labels]
    synthesize(model, networks, labels, outs, device, styles, args.batch_size)
    log.info("%s: wrote %d faces to %s", model.name, len(outs), args.out)


if __name__ == "__main__":
    cli.run(main)
