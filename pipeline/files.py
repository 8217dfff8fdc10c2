"""File helpers shared by the stages: outputs appear whole or not at all, and digests are streamed."""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import PipelineError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed to `path` only if the block succeeds.

    A process killed with SIGKILL leaves its temporary file behind (no `finally` runs): the next
    write of the same path removes such leftovers first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, glob.escape(path.name))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(folder: Path, pattern: str) -> None:
    """Remove the temporary files of atomic_path writes of `pattern` (a glob of file names) in
    `folder` whose writer process is gone (killed: no cleanup ran). A writer that is still alive
    keeps its file: after a SIGKILLed Snakemake its jobs may still be running."""
    for leftover in folder.glob(f".{pattern}.tmp-*"):
        pid = leftover.name.rpartition(".tmp-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file's bytes, read in chunks so large files need little memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV with a header row, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def read_csv(path: str | os.PathLike, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV whose header must be exactly `columns`."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != tuple(columns):
            raise PipelineError(f"{path}: expected columns {','.join(columns)}, found {reader.fieldnames}")
        return list(reader)
