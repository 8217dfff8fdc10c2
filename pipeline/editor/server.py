"""The face editor's HTTP side: the page (plain HTML, JS and CSS in pipeline/editor/static,
shipped with the package) and a small JSON API over `backend.Editor`.

The standard library's ThreadingHTTPServer serves it. It is enough for what the editor is, one
researcher's browser talking to a server on the same machine over a handful of routes, and it
adds nothing to pin in pyproject.toml and envs/; a framework (Flask, FastAPI with uvicorn)
would bring routing and a production-grade server that a local tool does not need. http.server
itself makes only basic security checks, which is why the editor binds to 127.0.0.1 unless told
otherwise, serves only its own static files, by name, and bounds every request (its body here,
its contents in `backend`).

    GET  /                         the page
    GET  /static/NAME              its scripts and styles
    GET  /api/info                 classes, models, test faces, parser, limits
    GET  /api/faces/ID/labels      a test face's label map       -> {"side", "labels"}
    GET  /api/faces/ID/photo       its photo, a PNG thumbnail
    POST /api/labels     (a PNG)   an uploaded label map, checked -> {"side", "labels"}
    POST /api/parse      (image)   an uploaded photo, parsed      -> {"side", "labels"}
    POST /api/style      (image)   a style image, checked         -> {"thumbnail"}
    POST /api/synthesize (JSON)    {"model", "side", "labels", "seed", "style"} -> {"image", "seconds"}

Label maps travel as base64 of their class indices, one byte per pixel, row by row; images
come back as PNG data URLs. A refused request gets a 4xx (or 503 when a model's queue is full)
and {"error": one line}, which the page shows.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import unquote, urlsplit

import numpy as np

from pipeline.editor.backend import Editor, EditorRequestError, decode_label_map, label_grid
from pipeline.errors import PipelineError
from pipeline.images import png_bytes

log = logging.getLogger("pipeline.editor")

# A request body: the largest label grid (2048 x 2048, base64) with a style image of about 10 MB.
MAX_REQUEST_BYTES = 24 * 2**20
STATIC = resources.files("pipeline.editor") / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
JSON = "application/json"


class RequestTooLarge(EditorRequestError):
    status = 413


class NotFound(EditorRequestError):
    status = 404


Answer = tuple[int, str, bytes]  # status, content type, body


def json_answer(value: dict, status: int = 200) -> Answer:
    return status, JSON, json.dumps(value).encode()


def labels_answer(labels: np.ndarray) -> Answer:
    return json_answer({"side": labels.shape[0], "labels": base64.b64encode(labels.tobytes()).decode()})


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def decode_base64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise EditorRequestError(f"{what}: expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise EditorRequestError(f"{what}: not base64 ({err})") from None


def synthesis_request(body: bytes) -> tuple[str, np.ndarray, int, bytes | None]:
    """(model name, label grid, seed, style image bytes or None) from a synthesis request's JSON."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EditorRequestError(f"synthesis request: not JSON ({err})") from None
    if not isinstance(request, dict):
        raise EditorRequestError("synthesis request: expected a JSON object")
    fields = {"model": (str, "a model's name"), "side": (int, "an integer"), "labels": (str, "base64 text"),
              "seed": (int, "an integer")}
    for name, (kind, described) in fields.items():
        # bool is an int to Python, never a side or a seed
        if not isinstance(request.get(name), kind) or isinstance(request.get(name), bool):
            raise EditorRequestError(f"synthesis request: {name!r} must be {described}")
    labels = label_grid(decode_base64(request["labels"], "painted label map"), request["side"])
    style = request.get("style")
    return request["model"], labels, request["seed"], None if style is None else decode_base64(style, "style image")


class EditorServer(ThreadingHTTPServer):
    # Request threads do not keep the process alive once the server is asked to stop.
    daemon_threads = True

    def __init__(self, editor: Editor, host: str, port: int) -> None:
        self.editor = editor
        super().__init__((host, port), EditorRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class EditorRequestHandler(BaseHTTPRequestHandler):
    server: EditorServer
    server_version = "spade-faces-editor"
    # A client that stops sending halfway frees its thread after this many seconds.
    timeout = 60

    def do_GET(self) -> None:
        self.answer(self.get)

    def do_POST(self) -> None:
        self.answer(self.post)

    def get(self, path: str) -> Answer:
        editor = self.server.editor
        parts = path.strip("/").split("/")
        if path == "/":
            return static_file("index.html")
        if len(parts) == 2 and parts[0] == "static":
            return static_file(parts[1])
        if path == "/api/info":
            return json_answer({**editor.info(), "max_request_bytes": MAX_REQUEST_BYTES})
        if len(parts) == 4 and parts[:2] == ["api", "faces"] and parts[3] == "labels":
            return labels_answer(editor.face_labels(parts[2]))
        if len(parts) == 4 and parts[:2] == ["api", "faces"] and parts[3] == "photo":
            return 200, "image/png", editor.face_photo(parts[2])
        raise NotFound(f"no such page: {path}")

    def post(self, path: str) -> Answer:
        editor = self.server.editor
        if path not in ("/api/labels", "/api/parse", "/api/style", "/api/synthesize"):
            raise NotFound(f"no such request: POST {path}")
        body = self.read_body()
        if path == "/api/labels":
            return labels_answer(decode_label_map(body))
        if path == "/api/parse":
            return labels_answer(editor.parse(body))
        if path == "/api/style":
            return json_answer({"thumbnail": png_data_url(editor.style_thumbnail(body))})
        started = time.perf_counter()
        face = editor.synthesize(*synthesis_request(body))
        return json_answer({"image": png_data_url(png_bytes(face)), "seconds": time.perf_counter() - started})

    def read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise EditorRequestError("the request has no Content-Length") from None
        if length > MAX_REQUEST_BYTES:
            # The unread body would be taken for the next request: drop the connection instead.
            self.close_connection = True
            raise RequestTooLarge(
                f"a request of {length / 2**20:.1f} MiB; the editor takes at most {MAX_REQUEST_BYTES / 2**20:.0f} MiB"
            )
        return self.rfile.read(length)

    def answer(self, route: Callable[[str], Answer]) -> None:
        path = unquote(urlsplit(self.path).path)
        try:
            status, content_type, body = route(path)
        except PipelineError as err:
            status = getattr(err, "status", 400)
            log.warning("%s %s: %d %s", self.command, path, status, err)
            status, content_type, body = json_answer({"error": str(err)}, status)
        except Exception as err:  # a bug or the device failing: the page still gets one line
            log.exception("%s %s failed", self.command, path)
            message = f"internal error ({type(err).__name__}: {err}); the editor's log has the details"
            status, content_type, body = json_answer({"error": message}, 500)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("%s %s: the client left before the answer", self.command, path)

    def log_message(self, format: str, *args: object) -> None:
        # One line per request would drown the log while painting; refusals are logged in `answer`.
        log.debug("%s %s", self.address_string(), format % args)


def static_file(name: str) -> Answer:
    """One of the page's own files, by name: nothing else on disk is reachable."""
    suffix = "." + name.rpartition(".")[2]
    resource = STATIC / name
    if "/" in name or suffix not in CONTENT_TYPES or not resource.is_file():
        raise NotFound(f"no such file: /static/{name}")
    return 200, CONTENT_TYPES[suffix], resource.read_bytes()
