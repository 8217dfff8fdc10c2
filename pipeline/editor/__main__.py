"""`python -m pipeline.editor --results results/`: the face editor, a local web page on which to
paint a label map (from a test face, an uploaded label map or a parsed photo) and see the face
each trained model (results/models/*/generator.pt) makes of it.

The server listens on 127.0.0.1 unless --host says otherwise. To reach it from another machine,
prefer an SSH tunnel (ssh -L 8000:127.0.0.1:8000 HOST, then open http://127.0.0.1:8000/ there);
--host 0.0.0.0 serves it to every host that can reach this one, with no authentication.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

import torch

from pipeline import cli
from pipeline.devices import resolve_device
from pipeline.editor.backend import Editor
from pipeline.editor.server import EditorServer
from pipeline.errors import PipelineError
from pipeline.layout import PARSER_WEIGHTS, Results

log = logging.getLogger("pipeline.editor")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.editor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=Path("results"), help="a run's results folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--parser-weights",
        type=Path,
        help=f"BiSeNet weights for parsing uploaded photos (default: the run's {PARSER_WEIGHTS}, beside its "
        "results folder)",
    )
    parser.add_argument("--parser-size", type=int, default=512, help="side the parser sees (parsing.size)")
    parser.add_argument(
        "--parser-amp",
        choices=["on", "off"],
        default="on",
        help="fp16 parsing on CUDA, as parsing.amp for the parse stage (default: on)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for the networks on the CPU (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "--device")
    parser_weights = args.parser_weights or Results(str(args.results)).resources(PARSER_WEIGHTS)
    editor = Editor.load(args.results, device, parser_weights, args.parser_size, args.parser_amp == "on")
    log.info("%d models on %s: %s", len(editor.models), device, ", ".join(editor.models))
    log.info("%d test faces; %s", len(editor.faces), editor.parser_note)
    try:
        server = EditorServer(editor, args.host, args.port)
    except OSError as err:
        raise PipelineError(f"cannot listen on {args.host}:{args.port} ({err.strerror}); try another --port") from None
    if not is_loopback(args.host):
        log.warning("listening on %s: anyone who can reach this machine can use the editor", args.host)
    log.info("face editor at %s (Ctrl-C stops it)", server.url)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log.info("stopped")


if __name__ == "__main__":
    cli.run(main)
