"""Verified HTTP downloads: resume with Range, retry with backoff, follow Google Drive's
confirm page, and give a file its final name only after its size and checksum match."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlparse

import requests
import urllib3

from pipeline.errors import PipelineError
from pipeline.files import file_digest
from pipeline.progress import progress

log = logging.getLogger(__name__)

USER_AGENT = "spade-faces-pipeline/0.1 (+python-requests)"
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 60.0


class DownloadError(PipelineError):
    """A file could not be fetched and verified."""


class QuotaExceeded(DownloadError):
    """Google Drive refuses further downloads of a file for now; retrying soon does not help."""


class UnknownHost(DownloadError):
    """The server's name does not resolve (offline, or no DNS): retrying does not help."""


class _Transient(Exception):
    """A failed request worth another attempt (5xx, 429, an unusable HTML page or Range answer)."""


@dataclass(frozen=True)
class RemoteFile:
    name: str  # what messages call the file, e.g. an image id
    url: str
    path: Path  # final location; the partial download lives at path + ".part"
    size: int | None  # expected bytes; None when unknown
    checksum: str  # "<hashlib algorithm>:<hex digest>", e.g. "md5:425a..."


@dataclass(frozen=True)
class RetryPolicy:
    retries: int  # attempts after the first
    timeout_s: float  # connect timeout and longest wait for more bytes
    backoff_s: float  # wait before the first retry, doubled for each further one
    # Whether a complete file with the wrong checksum is fetched again. Not for one whose
    # checksum a user typed (a wrong setting is likelier than bad bytes) and that is gigabytes.
    refetch_bad_bytes: bool = True


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def fetch(
    remote: RemoteFile,
    session: requests.Session,
    policy: RetryPolicy,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Make `remote.path` hold the verified file, downloading only what is missing."""
    if remote.path.exists():
        if _problem(remote.path, remote) is None:
            return remote.path
        log.warning("%s: %s fails verification; downloading it again", remote.name, remote.path)
        remote.path.unlink()
    remote.path.parent.mkdir(parents=True, exist_ok=True)
    return _Download(remote, session, policy.timeout_s, on_bytes).run(policy)


def fetch_one(remote: RemoteFile, policy: RetryPolicy) -> Path:
    """`fetch` one file with a session of its own and a progress bar of its bytes."""
    with new_session() as session, progress(total=remote.size, desc=remote.path.name, unit="B", unit_scale=True) as bar:
        return fetch(remote, session, policy, on_bytes=bar.update)


def fetch_all(
    remotes: Sequence[RemoteFile], policy: RetryPolicy, workers: int, desc: str = "download"
) -> None:
    """Fetch every file with `workers` threads; raise one DownloadError naming each failure.

    A Google Drive quota refusal or a host name that does not resolve stops the whole batch,
    since every further request would fail the same way.
    """
    failures: dict[str, str] = {}
    final: list[DownloadError] = []
    stop = threading.Event()
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()

    def work(remote: RemoteFile) -> None:
        if stop.is_set():
            return
        if not hasattr(local, "session"):
            local.session = new_session()
            with lock:
                sessions.append(local.session)
        try:
            fetch(remote, local.session, policy)
        except (QuotaExceeded, UnknownHost) as err:
            final.append(err)
            stop.set()
        except DownloadError as err:
            with lock:
                failures[remote.name] = str(err)
        finally:
            bar.update()

    with progress(total=len(remotes), desc=desc, unit="file") as bar:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, remotes))
    for session in sessions:
        session.close()
    if final:
        raise final[0]
    if failures:
        for message in failures.values():
            log.error("%s", message)
        names = ", ".join(sorted(failures))
        raise DownloadError(f"{len(failures)} of {len(remotes)} downloads failed: {names}")


class _Download:
    """One file's attempts. `url` moves on from Drive's first URL to the confirmed one, so
    that a resume after a cut asks the server that was actually sending the bytes."""

    def __init__(self, remote, session, timeout_s, on_bytes) -> None:
        self.remote, self.session, self.timeout_s, self.on_bytes = remote, session, timeout_s, on_bytes
        self.part = remote.path.with_name(remote.path.name + ".part")
        self.url = remote.url

    def run(self, policy: RetryPolicy) -> Path:
        remote, part, problem = self.remote, self.part, "not attempted"
        for attempt in range(policy.retries + 1):
            if attempt:
                time.sleep(min(policy.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
            try:
                self._append_missing_bytes()
            except (_Transient, requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as err:
                if _name_not_resolved(err):
                    host = urlparse(self.url).hostname
                    raise UnknownHost(f"{remote.name}: cannot resolve {host} (offline, or no DNS?) for {self.url}") from None
                problem = f"{type(err).__name__}: {err}"
                log.info("%s: attempt %d failed (%s)", remote.name, attempt + 1, problem)
                continue
            except requests.HTTPError as err:
                raise DownloadError(f"{remote.name}: {err}") from None
            problem = _problem(part, remote)
            if problem is None:
                os.replace(part, remote.path)
                return remote.path
            log.info("%s: attempt %d gave bad bytes (%s)", remote.name, attempt + 1, problem)
            if remote.size is None or part.stat().st_size >= remote.size:
                part.unlink()  # complete but wrong: resuming from these bytes cannot help
                if not policy.refetch_bad_bytes:
                    break
        raise DownloadError(f"{remote.name}: {problem} after {attempt + 1} attempts ({remote.url})")

    def _append_missing_bytes(self, confirm_pages_left: int = 2) -> None:
        part, size = self.part, self.remote.size
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset >= size:
            return
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self.session.get(self.url, headers=headers, stream=True, timeout=self.timeout_s) as response:
            if response.status_code in RETRY_STATUSES:
                raise _Transient(f"HTTP {response.status_code} from {self.url}")
            if response.status_code == 416 and offset:
                part.unlink()  # the partial file is longer than the server's: start over
                raise _Transient(f"HTTP 416 for a resume at byte {offset}")
            response.raise_for_status()
            if response.headers.get("Content-Type", "").startswith("text/html"):
                if confirm_pages_left == 0:
                    raise _Transient(f"got HTML pages instead of the file from {response.url}")
                self.url = _confirmed_url(response)
                return self._append_missing_bytes(confirm_pages_left - 1)
            if response.status_code == 206 and _range_start(response) != offset:
                part.unlink()
                raise _Transient(f"asked for bytes from {offset}, got {response.headers.get('Content-Range')}")
            # A server that ignores Range answers 200 with the whole file: start over.
            with open(part, "ab" if response.status_code == 206 else "wb") as f:
                # read1 hands over whatever has arrived, so bytes before a cut are kept for the
                # resume (urllib3's read(n) waits for n bytes and drops them if the connection dies).
                while chunk := response.raw.read1(1 << 16, decode_content=True):
                    f.write(chunk)
                    if self.on_bytes:
                        self.on_bytes(len(chunk))


def _name_not_resolved(err: BaseException) -> bool:
    """Whether a connection failed because the host name did not resolve (requests wraps
    urllib3's NameResolutionError in a MaxRetryError in a ConnectionError)."""
    while err is not None:
        if isinstance(err, urllib3.exceptions.NameResolutionError):
            return True
        if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
            err = err.reason
        else:
            err = err.args[0] if err.args and isinstance(err.args[0], BaseException) else None
    return False


def _range_start(response: requests.Response) -> int | None:
    # "Content-Range: bytes 100-199/200"
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _problem(path: Path, remote: RemoteFile) -> str | None:
    """Why the bytes at `path` are not `remote`'s, or None when they are."""
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        return f"size {actual_size} bytes, expected {remote.size}"
    algorithm, expected = remote.checksum.split(":", 1)
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        return f"checksum mismatch: {algorithm} {actual}, expected {expected}"
    return None


# --- Google Drive -------------------------------------------------------------------------

_QUOTA_MARKERS = ("Google Drive - Quota exceeded", "Too many users have viewed or downloaded this file recently")


def _confirmed_url(response: requests.Response) -> str:
    """The URL behind an HTML page served instead of a file: Drive's virus-scan confirm
    page for large files. Drive's quota page is final; any other page is worth a retry."""
    page = response.text
    if any(marker in page for marker in _QUOTA_MARKERS):
        raise QuotaExceeded(f"Google Drive's download quota is exceeded for {response.url}; try again in a day")
    target = drive_confirm_url(page, response.url)
    if target is None:
        raise _Transient(f"got an HTML page instead of the file from {response.url}")
    return target


def drive_confirm_url(page: str, base_url: str) -> str | None:
    """The download URL on a Google Drive confirm page: a `download-form` whose hidden
    inputs make the query (current Drive), or an `export=download` link (older Drive)."""
    parser = _ConfirmPageParser()
    parser.feed(page)
    if parser.form_action is not None:
        return urljoin(base_url, parser.form_action) + "?" + urlencode(parser.form_fields)
    if parser.export_link is not None:
        return urljoin(base_url, parser.export_link)
    return None


class _ConfirmPageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form_action: str | None = None
        self.form_fields: list[tuple[str, str]] = []
        self.export_link: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "download-form":
            self.form_action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and "name" in a:
            self.form_fields.append((a["name"], a.get("value", "")))
        elif tag == "a" and "export=download" in a.get("href", "") and self.export_link is None:
            self.export_link = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
