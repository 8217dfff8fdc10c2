"""`python -m pipeline.fid DIR_A DIR_B`: FID (and KID) with pytorch-fid's InceptionV3 (pool3, 2048-d).

FID is pytorch-fid's own computation (its image loading, Inception and Fréchet distance), so it
agrees with `python -m pytorch_fid DIR_A DIR_B` (and with `--dims` as pytorch-fid's: the 64, 192
or 768 features of an earlier block, cheaper and not comparable with published FID). KID, the
unbiased polynomial-kernel MMD of Bińkowski et al. (2018), comes from the same features: unlike
FID it is unbiased for the few thousand images of a test set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import cli
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline.fid")

# pool3, the features every published FID uses. Fewer come from earlier blocks: their Inception
# stops sooner and their covariance is small (scipy's sqrtm of a 2048 x 2048 takes 20 s on 2
# CPU cores), but FID then measures other features.
DIMS = 2048


class InceptionWeightsError(PipelineError):
    """pytorch-fid's Inception weights cannot be found or downloaded."""


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images pytorch-fid would read from `folder`, in its order."""
    from pytorch_fid.fid_score import IMAGE_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: not a directory")
    files = sorted(file for ext in IMAGE_EXTENSIONS for file in folder.glob(f"*.{ext}"))
    if not files:
        raise PipelineError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


@contextlib.contextmanager
def _hub_dir_holding(weights: Path) -> Iterator[None]:
    """A torch hub cache that holds `weights` under pytorch-fid's file name, so pytorch-fid's
    own loader takes it instead of downloading."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        (Path(hub) / "checkpoints").mkdir()
        (Path(hub) / "checkpoints" / FID_WEIGHTS_URL.rsplit("/", 1)[-1]).symlink_to(weights.resolve())
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def inception(weights: str | os.PathLike | None, device: torch.device, dims: int = DIMS) -> torch.nn.Module:
    """pytorch-fid's FID InceptionV3 returning its `dims` features (pool3 for 2048).

    weights None: pytorch-fid's own loading from the torch hub cache; a missing file is
    downloaded by torch (checked against the hash prefix in its name). A path: that file,
    which must hold a plain state dict (checked with weights_only=True before use).
    """
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

    if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
        raise PipelineError(f"metrics.fid_dims {dims}: pytorch-fid has {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}")
    block = InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    if weights is None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_URL.rsplit("/", 1)[-1]
        if not cached.exists():
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(cached), hash_prefix=cached.stem.rsplit("-", 1)[-1])
            except (OSError, RuntimeError) as err:
                raise InceptionWeightsError(
                    f"cannot get pytorch-fid's Inception weights from {FID_WEIGHTS_URL} to {cached} "
                    f"({' '.join(str(err).split())}); put the file there or set metrics.inception_weights"
                ) from None
        weights = cached
    weights = Path(weights)
    if not weights.is_file():
        raise InceptionWeightsError(f"metrics.inception_weights {weights}: no such file")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise InceptionWeightsError(f"{weights}: not a loadable state dict ({str(err).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise InceptionWeightsError(f"{weights}: holds a {type(state).__name__}, expected a state dict")
    with _hub_dir_holding(weights):
        return InceptionV3([block]).to(device).eval()


def features(
    files: Sequence[os.PathLike], model: torch.nn.Module, device: torch.device, batch_size: int = 50, workers: int = 0
) -> np.ndarray:
    """N x d features of `model` (pool3: d = 2048), computed by pytorch-fid (its image loading and
    batching)."""
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    dims = {block: dims for dims, block in InceptionV3.BLOCK_INDEX_BY_DIM.items()}[model.output_blocks[-1]]
    return get_activations(list(files), model, min(batch_size, len(files)), dims, device, workers)


@dataclass(frozen=True)
class Statistics:
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray

    @property
    def dims(self) -> int:
        return self.features.shape[1]

    @classmethod
    def of(cls, feats: np.ndarray) -> "Statistics":
        return cls(np.mean(feats, axis=0), np.cov(feats, rowvar=False), feats)

    def save(self, path: str | os.PathLike) -> None:
        from pipeline.files import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, mu=self.mu, sigma=self.sigma, features=self.features)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Statistics":
        with np.load(path) as data:
            return cls(data["mu"], data["sigma"], data["features"])


def frechet_distance(a: Statistics, b: Statistics) -> float:
    from pytorch_fid.fid_score import calculate_frechet_distance

    return float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float | None]:
    """Mean and std over random subsets of the unbiased MMD^2 with the kernel
    k(x, y) = (x.y / d + 1)^3. When neither set is larger than the subset size every subset
    is the whole set: one value, and no std (None), since there is no spread to measure."""
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise PipelineError(f"KID needs at least 2 images on each side, got {len(a)} and {len(b)}")
    if size == len(a) == len(b):
        return _unbiased_mmd2(a, b), None
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        values.append(_unbiased_mmd2(x, y))
    return float(np.mean(values)), float(np.std(values))


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    m = len(x)
    # Diagonal terms (a sample with itself) are left out of the within-set means: that is what
    # makes the estimate unbiased.
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())


def warn_if_unstable(name: str, count: int, dims: int = DIMS) -> bool:
    """True (and a warning) when `count` images are too few for a full-rank covariance of `dims`
    features."""
    if count < dims:
        log.warning(
            "%s: %d images, fewer than %d: the covariance is singular and FID is unreliable "
            "(reported, marked unstable); KID is the better guide at this size",
            name,
            count,
            dims,
        )
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.fid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs=2, type=Path, metavar="DIR")
    parser.add_argument("--weights", type=Path, help="Inception weights file (default: pytorch-fid's, via torch hub)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--dims", type=int, default=DIMS, help="Inception features (pytorch-fid's --dims)")
    parser.add_argument("--json", action="store_true", help="print FID, KID and counts as JSON")
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    files = [image_files(folder) for folder in args.dirs]
    model = inception(args.weights, device, args.dims)
    stats = [Statistics.of(features(f, model, device, args.batch_size, args.workers)) for f in files]
    unstable = any([warn_if_unstable(str(folder), len(f), args.dims) for folder, f in zip(args.dirs, files)])
    fid = frechet_distance(*stats)
    if args.json:
        kid, kid_std = kernel_inception_distance(stats[0].features, stats[1].features)
        print(
            json.dumps(
                {"FID": fid, "FID_unstable": unstable, "KID": kid, "KID_std": kid_std, "n": [len(f) for f in files]}
            )
        )
    else:
        print(f"FID: {fid}" + ("  (unstable: fewer images than feature dimensions)" if unstable else ""))


if __name__ == "__main__":
    cli.run(main)
