"""A parsing shard's manifest: the CSV that lists each image of the shard with its label map.
Later stages read label maps through manifests, never by globbing results/labels."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.split import SplitRow, read_split
from pipeline.files import read_csv, write_csv
from pipeline.shards import shard_items

COLUMNS = ("image_id", "split", "path", "label")


def write_manifest(rows: Iterable[tuple[str, str, str, str]], path: str | os.PathLike) -> None:
    write_csv(path, COLUMNS, rows)


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    return read_csv(path, COLUMNS)


def read_manifests(paths: Sequence[str | os.PathLike], split: str | None = None) -> list[dict[str, str]]:
    """The rows of several manifests in order, only those of `split` when it is given."""
    return [row for path in paths for row in read_manifest(path) if split is None or row["split"] == split]


@dataclass(frozen=True)
class LabelShard:
    """One shard of the split, and where each of its images' label map goes: what a parsing
    shard (or a CelebAMask-HQ merge shard) makes and then lists in its manifest."""

    rows: Sequence[SplitRow]
    labels: list[Path]

    @classmethod
    def of(cls, split_csv: str | os.PathLike, shard: int, shard_size: int, labels_dir: Path) -> "LabelShard":
        rows = shard_items(read_split(split_csv), shard, shard_size)
        return cls(rows, [labels_dir / f"{row.image_id}.png" for row in rows])

    def write_manifest(self, path: str | os.PathLike) -> None:
        write_manifest(((row.image_id, row.split, row.path, str(label)) for row, label in zip(self.rows, self.labels)),
                       path)
