"""CelebAMask-HQ source: the published face protocol, with the dataset's own hand-drawn masks as
the label maps.

The unpacked archive (Lee et al. 2020, github.com/switchablenorms/CelebAMask-HQ) holds
CelebA-HQ-img/{i}.jpg (1024x1024, i = 0..29,999), CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_{part}.png
(512x512, one binary mask per face part; a face without glasses has no eye_g file) and
CelebA-HQ-to-CelebA-mapping.txt (idx, orig_idx, orig_file: each image's CelebA original).

Masks are merged into one label map as the dataset's face_parsing/Data_preprocessing/g_mask.py
does: the parts in its order (MERGE_ORDER), each non-zero pixel of a part's mask taking that
part, so a later part overwrites an earlier one; the parts are then this project's classes by name.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import CelebAMaskHQSource, ConfigError, DataConfig
from pipeline.data import split
from pipeline.data.folder import verify as verify_images
from pipeline.download import DownloadError, RemoteFile, RetryPolicy, fetch_one
from pipeline.errors import PipelineError
from pipeline.labelmaps import CLASS_NAMES, label_provenance, write_label
from pipeline.progress import progress

log = logging.getLogger(__name__)

IMAGE_DIR = "CelebA-HQ-img"
# The archive's spelling; g_mask.py reads "CelebAMaskHQ-mask-anno".
MASK_DIR = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
IMAGE_COUNT = 30_000
IMAGES_PER_MASK_FOLDER = 2_000
IMAGE_SIZE = 1024
MASK_SIZE = 512

# g_mask.py's active part list, in its merge order.
MERGE_ORDER = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip
PART_CLASS = {part: CLASS_NAMES.index(part) for part in MERGE_ORDER}

# data.split: index: the last 2,000 ids are the test set (SEAN's, SDM's and SCDM's protocol).
FIRST_TEST_ID = 28_000
# data.split: celeba: CelebA's own partition by original file number (list_eval_partition.txt):
# 000001-162770.jpg train, 162771-182637.jpg val, 182638-202599.jpg test.
CELEBA_LAST_TRAIN = 162_770
CELEBA_LAST_VAL = 182_637

BY_HAND = (
    "download CelebAMask-HQ.zip yourself (https://github.com/switchablenorms/CelebAMask-HQ), unpack it "
    "and set data.folder to the folder that holds CelebA-HQ-img/ (docs/configuration.md: CelebAMask-HQ)"
)

_IMAGE_NAME = re.compile(r"^\d+$")


def image_id(index: int) -> str:
    """The pipeline's id of image i: five digits, as the mask files spell it, so ids sort by index."""
    return f"{index:05d}"


def find_images(root: Path) -> dict[int, Path]:
    """Index -> image path of every CelebA-HQ-img/*.jpg under `root` (a partial tree is fine);
    a name that is not an index 0..29,999 is an error naming the file."""
    folder = root / IMAGE_DIR
    if not folder.is_dir():
        raise ConfigError(f"config key data.folder: {root} has no {IMAGE_DIR}/ (is it the unpacked CelebAMask-HQ?)")
    images: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ".jpg":
            continue
        index = int(path.stem) if _IMAGE_NAME.match(path.stem) else -1
        if not 0 <= index < IMAGE_COUNT:
            raise PipelineError(f"{path}: not a CelebAMask-HQ image id (0..{IMAGE_COUNT - 1})")
        images[index] = path
    if not images:
        raise ConfigError(f"config key data.folder: no .jpg images in {folder}")
    return images


def mask_folder(root: Path, index: int) -> Path:
    return root / MASK_DIR / str(index // IMAGES_PER_MASK_FOLDER)


def prepare(cfg: DataConfig, threads: int) -> list[split.SplitRow]:
    """The split rows of the chosen images of the tree (data.folder, or the downloaded archive),
    each in the part data.split gives its id; data.subsample takes a seeded subset of them."""
    root = Path(cfg.folder) if cfg.folder else unpacked_root(cfg.celebamask_hq)
    images = find_images(root)
    if cfg.split == "index":
        parts = index_split(images)
    else:
        parts = celeba_split(images, root / MAPPING_FILE, cfg.val_in_train)
    by_id = {image_id(index): index for index in parts}
    chosen = sorted(split.choose(by_id, cfg.subsample, cfg.seed))
    rows = [split.SplitRow(i, parts[by_id[i]], str(images[by_id[i]])) for i in chosen]
    counts = Counter(row.split for row in rows)
    if not counts["train"] or not counts["test"]:
        raise ConfigError(
            f"config key data.split: {cfg.split} gives {counts['train']} train and {counts['test']} test images "
            f"of the {len(rows)} chosen under {root}; both must be at least 1"
        )
    verify_images({row.image_id: Path(row.path) for row in rows}, threads, check=verify_image)
    return rows


def verify_image(path: Path) -> None:
    """The image decodes at 1024x1024 and its mask folder exists, or an error names the file."""
    folder = mask_folder(path.parent.parent, int(path.stem))
    if not folder.is_dir():
        raise PipelineError(f"{folder}: mask folder of image {path.name} is missing")
    try:
        with Image.open(path) as image:
            image.load()
            size = image.size
    except (OSError, ValueError, SyntaxError) as err:
        raise PipelineError(f"{path}: not a readable image ({err})") from None
    if size != (IMAGE_SIZE, IMAGE_SIZE):
        raise PipelineError(f"{path}: {size[0]}x{size[1]} pixels, CelebA-HQ images are {IMAGE_SIZE}x{IMAGE_SIZE}")


def merged_labels(root: Path, index: int) -> np.ndarray:
    """The 512x512 label map of image `index`, in this project's classes (background where no
    part's mask is set)."""
    labels = np.zeros((MASK_SIZE, MASK_SIZE), dtype=np.uint8)
    folder = mask_folder(root, index)
    paths = [folder / f"{image_id(index)}_{part}.png" for part in MERGE_ORDER]
    if not any(path.exists() for path in paths):  # every face has skin: the masks are missing
        raise PipelineError(f"{folder}: no {image_id(index)}_*.png part masks for image {index}")
    for part, path in zip(MERGE_ORDER, paths):
        if not path.exists():
            continue  # a part the face does not show
        try:
            with Image.open(path) as image:
                mask = np.asarray(image.convert("L"))
        except (OSError, ValueError, SyntaxError) as err:
            raise PipelineError(f"{path}: not a readable mask ({err})") from None
        if mask.shape != (MASK_SIZE, MASK_SIZE):
            raise PipelineError(
                f"{path}: {mask.shape[1]}x{mask.shape[0]} pixels, CelebAMask-HQ masks are {MASK_SIZE}x{MASK_SIZE}"
            )
        labels[mask != 0] = PART_CLASS[part]
    return labels


def mask_provenance(root: Path, index: int) -> str:
    """What a merged label map records of its making: another tree is merged again."""
    return f"CelebAMask-HQ masks of image {index} in {root.resolve()}, merged in g_mask.py's order"


def write_merged(image_path: str | os.PathLike, destination: Path) -> bool:
    """Merge the masks of the CelebA-HQ image at `image_path` into `destination`, unless a merge
    of them is there already; True when it wrote one."""
    image_path = Path(image_path)
    index = int(image_path.stem)
    root = image_path.parent.parent
    if label_provenance(destination) == mask_provenance(root, index):
        return False
    write_label(merged_labels(root, index), destination, provenance=mask_provenance(root, index))
    return True


def index_split(indices: Iterable[int]) -> dict[int, str]:
    """data.split: index: ids 28,000-29,999 test, the rest train."""
    return {index: "test" if index >= FIRST_TEST_ID else "train" for index in indices}


def celeba_split(indices: Iterable[int], mapping: Path, val_in_train: bool) -> dict[int, str]:
    """data.split: celeba: each image's part is its CelebA original's (by file number); val
    images are left out, or train with `val_in_train`."""
    originals = read_mapping(mapping)
    parts = {}
    for index in indices:
        if index not in originals:
            raise PipelineError(f"{mapping}: no row for image {index}")
        number = originals[index]
        if CELEBA_LAST_TRAIN < number <= CELEBA_LAST_VAL and not val_in_train:
            continue  # CelebA's val
        parts[index] = "train" if number <= CELEBA_LAST_VAL else "test"
    return parts


def read_mapping(path: Path) -> dict[int, int]:
    """idx -> the number of its CelebA original file (orig_file 119613.jpg -> 119613)."""
    if not path.is_file():
        raise PipelineError(f"{path}: missing (data.split: celeba needs CelebAMask-HQ's {MAPPING_FILE})")
    lines = path.read_text().split("\n")
    header = lines[0].split()
    if header[:1] != ["idx"] or "orig_file" not in header:
        raise PipelineError(f"{path}: expected a header 'idx orig_idx orig_file', found {lines[0]!r}")
    column = header.index("orig_file")
    originals = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        try:
            originals[int(fields[0])] = int(Path(fields[column]).stem)
        except (IndexError, ValueError):
            raise PipelineError(f"{path}:{number}: malformed row {line!r}") from None
    return originals


def unpacked_root(source: CelebAMaskHQSource) -> Path:
    """The unpacked tree under source.dir, downloading and unpacking the archive first when it
    is not there. The archive is accepted only with the size and sha256 the config gives."""
    target = Path(source.dir) / "CelebAMask-HQ"
    if (target / IMAGE_DIR).is_dir():
        return target
    for key in ("archive_size", "archive_sha256"):
        if getattr(source, key) is None:
            raise ConfigError(
                f"config key data.celebamask_hq.{key}: no checksum is published for CelebAMask-HQ.zip, so a "
                f"download is accepted only against the size and sha256 you set here; or {BY_HAND}"
            )
    archive = Path(source.dir) / "CelebAMask-HQ.zip"
    remote = RemoteFile("CelebAMask-HQ.zip", source.archive_url, archive, source.archive_size,
                        f"sha256:{source.archive_sha256}")
    try:
        fetch_one(remote, RetryPolicy(source.retries, source.timeout_s, source.backoff_s, refetch_bad_bytes=False))
    except DownloadError as err:
        raise DownloadError(f"{err}. To get CelebAMask-HQ another way, {BY_HAND}") from None
    unpack(archive, target)
    return target


def unpack(archive: Path, target: Path) -> None:
    """Unpack the archive's CelebAMask-HQ/ folder to `target` whole, or not at all."""
    staging = target.with_name(f".{target.name}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in progress(bundle.infolist(), desc="unpack", unit="file"):
                parts = Path(member.filename).parts
                if member.is_dir() or len(parts) < 2 or parts[0] != target.name or ".." in parts:
                    continue
                destination = staging.joinpath(*parts[1:])
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as src, open(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not (staging / IMAGE_DIR).is_dir():
            raise PipelineError(f"{archive}: no {target.name}/{IMAGE_DIR}/ inside")
        os.replace(staging, target)
    except (zipfile.BadZipFile, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise PipelineError(f"{archive}: cannot unpack ({err})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("unpacked %s to %s", archive, target)
