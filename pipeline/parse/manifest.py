"""A parsing shard's manifest: the CSV that lists each image of the shard with its label map.
Later stages read label maps through manifests, never by globbing results/labels."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable

from pipeline.errors import PipelineError
from pipeline.files import atomic_path

COLUMNS = ("image_id", "split", "path", "label")


def write_manifest(rows: Iterable[tuple[str, str, str, str]], path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise PipelineError(f"{path}: expected columns {','.join(COLUMNS)}, found {reader.fieldnames}")
        return list(reader)
