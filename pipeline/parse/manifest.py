"""A parsing shard's manifest: the CSV that lists each image of the shard with its label map.
Later stages read label maps through manifests, never by globbing results/labels."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from pipeline.files import read_csv, write_csv

COLUMNS = ("image_id", "split", "path", "label")


def write_manifest(rows: Iterable[tuple[str, str, str, str]], path: str | os.PathLike) -> None:
    write_csv(path, COLUMNS, rows)


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    return read_csv(path, COLUMNS)


def read_manifests(paths: Sequence[str | os.PathLike], split: str | None = None) -> list[dict[str, str]]:
    """The rows of several manifests in order, only those of `split` when it is given."""
    return [row for path in paths for row in read_manifest(path) if split is None or row["split"] == split]
