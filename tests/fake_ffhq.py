"""A loopback HTTP server that plays FFHQ's hosts for the download tests.

It serves the metadata json in the official schema, a mirror ({base}/mirror/{file_path}) and a
Google Drive look-alike (/uc?id=... answers with a virus-scan confirm page whose form leads
to /download?...), honours Range requests, and injects faults on request: per URL path, a queue
of "500", "cut" (headers promise the whole file, half the body is sent, the connection closes),
"slow" (no answer until after the client's timeout) and "quota" (Drive's quota page).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" value="Download anyway"/>
<input type="hidden" name="id" value="{id}">
<input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="0f5c-test">
</form></body></html>"""

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>
<body><p>Too many users have viewed or downloaded this file recently. Please try accessing the
file again later.</p></body></html>"""


@dataclass
class FakeFfhq:
    images: dict[str, bytes]  # image id -> file bytes
    slow_s: float = 1.5
    faults: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    md5_override: dict[str, str] = field(default_factory=dict)  # image id -> md5 the metadata claims
    path_override: dict[str, str] = field(default_factory=dict)  # image id -> file_path in metadata
    missing: set[str] = field(default_factory=set)  # ids in the metadata whose files answer 404
    base_url: str = ""

    def file_path(self, image_id: str) -> str:
        return f"images1024x1024/{image_id[:2]}000/{image_id}.png"

    def metadata(self) -> dict:
        items = {}
        for index, (image_id, data) in enumerate(sorted(self.images.items())):
            spec = {
                "file_url": f"{self.base_url}/uc?id=drive-{image_id}",
                "file_path": self.path_override.get(image_id, self.file_path(image_id)),
                "file_size": len(data),
                "file_md5": self.md5_override.get(image_id, hashlib.md5(data).hexdigest()),
            }
            thumb = {**spec, "file_path": spec["file_path"].replace("images1024x1024", "thumbnails128x128")}
            items[str(index)] = {"category": "training", "image": spec, "thumbnail": thumb}
        return items

    def metadata_bytes(self) -> bytes:
        return json.dumps(self.metadata()).encode()

    def fault(self, path: str, *kinds: str) -> None:
        self.faults[path].extend(kinds)

    def mirror_path(self, image_id: str) -> str:
        return f"/mirror/{self.file_path(image_id)}"

    def body_for(self, url) -> bytes | None:
        if url.path == "/ffhq-dataset-v2.json":
            return self.metadata_bytes()
        if url.path == "/download":
            image_id = parse_qs(url.query).get("id", [""])[0].removeprefix("drive-")
            return None if image_id in self.missing else self.images.get(image_id)
        for image_id in self.images.keys() - self.missing:
            if url.path in (self.mirror_path(image_id), self.mirror_path(image_id).replace("images1024x1024", "thumbnails128x128")):
                return self.images[image_id]
        return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeFfhq  # set on the subclass made per server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        fake = self.fake
        fake.requests.append((url.path, self.headers.get("Range")))
        fault = fake.faults[url.path].popleft() if fake.faults[url.path] else None
        if fault == "slow":
            time.sleep(fake.slow_s)
        if fault == "500":
            return self._send(500, b"internal error", "text/plain")
        if url.path == "/uc":
            if fault == "quota":
                return self._send(200, QUOTA_PAGE.encode(), "text/html; charset=utf-8")
            file_id = parse_qs(url.query).get("id", [""])[0]
            page = CONFIRM_PAGE.format(action=f"{fake.base_url}/download", id=file_id)
            return self._send(200, page.encode(), "text/html; charset=utf-8")
        body = fake.body_for(url)
        if body is None:
            return self._send(404, b"not found", "text/plain")
        start = 0
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[len("bytes="):].split("-")[0])
        status = 206 if start else 200
        chunk = body[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        try:
            if fault == "cut":
                self.wfile.write(chunk[: len(chunk) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class FakeFfhqServer:
    """Runs a FakeFfhq on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, fake: FakeFfhq) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        fake.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.fake = fake
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeFfhq:
        self.thread.start()
        return self.fake

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
