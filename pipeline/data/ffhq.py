"""FFHQ source: the official metadata json names every image's URL, path, size and MD5."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import quote, urlparse

from pipeline.config import ConfigError, FfhqSource
from pipeline.download import (
    DownloadError,
    QuotaExceeded,
    RemoteFile,
    RetryPolicy,
    UnknownHost,
    fetch_all,
    fetch_one,
)
from pipeline.errors import PipelineError
from pipeline.files import file_digest

# The metadata key of each downloadable kind (see NVlabs/ffhq-dataset).
KIND_KEYS = {"images1024x1024": "image", "thumbnails128x128": "thumbnail"}
METADATA_NAME = "ffhq-dataset-v2.json"
# What to do when Google Drive cannot serve FFHQ to this machine (docs/configuration.md: "Getting FFHQ by hand").
FFHQ_BY_HAND = (
    "set data.ffhq.mirror to the base URL of an FFHQ mirror (and data.ffhq.metadata to its "
    "ffhq-dataset-v2.json or a local copy), or download FFHQ yourself "
    "(https://github.com/NVlabs/ffhq-dataset: images1024x1024/) and set data.source: folder and "
    "data.folder: /path/to/images1024x1024 (docs/configuration.md: Getting FFHQ by hand)"
)


class MetadataError(PipelineError):
    """The metadata json is malformed or asks for something unsafe."""


@dataclass(frozen=True)
class FfhqEntry:
    image_id: str
    file_url: str
    file_path: PurePosixPath  # relative, checked to stay inside the data directory
    file_size: int
    file_md5: str


def is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def retry_policy(source: FfhqSource) -> RetryPolicy:
    return RetryPolicy(retries=source.retries, timeout_s=source.timeout_s, backoff_s=source.backoff_s)


def metadata_path(source: FfhqSource) -> Path:
    """The local, verified metadata json: downloaded into the data directory when it is a URL."""
    if is_url(source.metadata):
        if source.metadata_md5 is None:
            raise ConfigError("config key data.ffhq.metadata_md5: required when data.ffhq.metadata is a URL")
        remote = RemoteFile(
            name="FFHQ metadata",
            url=source.metadata,
            path=Path(source.dir) / METADATA_NAME,
            size=None,
            checksum=f"md5:{source.metadata_md5}",
        )
        with advised():
            return fetch_one(remote, retry_policy(source))
    path = Path(source.metadata)
    if not path.is_file():
        raise ConfigError(f"config key data.ffhq.metadata: {path} is neither a URL nor a file")
    if source.metadata_md5 is not None and file_digest(path, "md5") != source.metadata_md5:
        raise MetadataError(f"{path}: MD5 differs from data.ffhq.metadata_md5 {source.metadata_md5}")
    return path


def read_metadata(path: str | os.PathLike, kind: str) -> dict[str, FfhqEntry]:
    """Entries of one kind by image id; unsafe or malformed entries are errors naming them."""
    try:
        with open(path, "rb") as f:
            items = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise MetadataError(f"{path}: not a readable metadata json ({err})") from None
    if not isinstance(items, dict):
        raise MetadataError(f"{path}: expected a json object keyed by image index")
    entries: dict[str, FfhqEntry] = {}
    key = KIND_KEYS[kind]
    for index, item in items.items():
        where = f"{path}: entry {index} {key}"
        try:
            spec = item[key]
            file_path = safe_relative_path(spec["file_path"], where)
            entry = FfhqEntry(
                image_id=file_path.stem,
                file_url=str(spec["file_url"]),
                file_path=file_path,
                file_size=int(spec["file_size"]),
                file_md5=str(spec["file_md5"]).lower(),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise MetadataError(f"{where}: missing or malformed field ({err})") from None
        if entry.image_id in entries:
            raise MetadataError(f"{where}: image id {entry.image_id} appears twice")
        entries[entry.image_id] = entry
    if not entries:
        raise MetadataError(f"{path}: no entries")
    return entries


def safe_relative_path(file_path: str, where: str) -> PurePosixPath:
    """Refuse metadata paths that could write outside the data directory."""
    if not isinstance(file_path, str) or not file_path:
        raise MetadataError(f"{where}: file_path must be a non-empty string")
    posix = PurePosixPath(file_path)
    if posix.is_absolute() or PureWindowsPath(file_path).anchor or "\\" in file_path:
        raise MetadataError(f"{where}: refusing absolute file_path {file_path!r}")
    if ".." in posix.parts:
        raise MetadataError(f"{where}: refusing file_path with '..': {file_path!r}")
    return posix


def download(entries: Iterable[FfhqEntry], source: FfhqSource) -> dict[str, Path]:
    """Fetch and verify the given entries into the data directory; return their paths by id."""
    root = Path(source.dir)
    remotes = [
        RemoteFile(
            name=entry.image_id,
            url=f"{source.mirror.rstrip('/')}/{quote(str(entry.file_path))}" if source.mirror else entry.file_url,
            path=root / entry.file_path,
            size=entry.file_size,
            checksum=f"md5:{entry.file_md5}",
        )
        for entry in entries
    ]
    with advised():
        fetch_all(remotes, retry_policy(source), workers=source.workers, desc=f"FFHQ {source.kind}")
    return {remote.name: remote.path for remote in remotes}


@contextmanager
def advised():
    """Failures no rerun soon can mend (an unresolvable host, Drive's quota) say what to do."""
    try:
        yield
    except (UnknownHost, QuotaExceeded) as err:
        raise DownloadError(f"{err}. To get FFHQ another way, {FFHQ_BY_HAND}") from None
