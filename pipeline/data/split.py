"""Deterministic subsample and train/test split.

Images are ordered by a seeded hash of their id, so the order of any two images never depends
on which other images exist; a subsample is a prefix of that order (a larger one is a superset);
and the split of an image depends only on its position in the order (every 1/test_fraction-th
image is a test image), so growing the subsample never moves an image between train and test.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from pipeline.config import ConfigError
from pipeline.files import read_csv, write_csv

COLUMNS = ("image_id", "split", "path")


@dataclass(frozen=True)
class SplitRow:
    image_id: str
    split: str  # "train" or "test"
    path: str


def seeded_order(image_ids: Iterable[str], seed: int) -> list[str]:
    return sorted(image_ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())


def choose(image_ids: Iterable[str], subsample: int | None, seed: int) -> list[str]:
    """The first `subsample` ids of the seeded order (all of them when subsample is None)."""
    order = seeded_order(image_ids, seed)
    if subsample is not None and subsample > len(order):
        raise ConfigError(f"config key data.subsample: asks for {subsample} images, only {len(order)} exist")
    return order if subsample is None else order[:subsample]


def assign(chosen: list[str], paths: Mapping[str, str | os.PathLike], test_fraction: float) -> list[SplitRow]:
    """Split the ordered `chosen` ids: position i is a test image when floor((i+1)f) > floor(i f),
    so every prefix of n images holds exactly floor(n f) test images."""
    fraction = Fraction(str(test_fraction))
    rows = [
        SplitRow(image_id, "test" if int((i + 1) * fraction) > int(i * fraction) else "train", str(paths[image_id]))
        for i, image_id in enumerate(chosen)
    ]
    n_test = sum(row.split == "test" for row in rows)
    if n_test == 0 or n_test == len(rows):
        raise ConfigError(
            f"config key data.test_fraction: {test_fraction} of {len(rows)} images gives "
            f"{n_test} test and {len(rows) - n_test} train images; both must be at least 1"
        )
    return sorted(rows, key=lambda row: row.image_id)


def write_split(rows: list[SplitRow], path: str | os.PathLike) -> None:
    write_csv(path, COLUMNS, ((row.image_id, row.split, row.path) for row in rows))


def read_split(path: str | os.PathLike) -> list[SplitRow]:
    return [SplitRow(**row) for row in read_csv(path, COLUMNS)]
