"""`python -m pipeline.demo`: the offline demo's data and parser.

    python -m pipeline.demo parser --out resources/weights/procedural_bisenet.pth   # ~3 min on 2 CPU cores
    python -m pipeline.demo faces OUT_DIR COUNT [--seed S]   # look at drawings and their label maps
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from pipeline import cli
from pipeline.data.procedural import write_faces
from pipeline.demo.parser import ParserTraining, train_parser
from pipeline.files import atomic_path

log = logging.getLogger("pipeline.demo")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    weights = commands.add_parser("parser", help="train BiSeNet on procedural faces; save its state dict")
    weights.add_argument("--out", type=Path, required=True)
    weights.add_argument("--steps", type=int, default=ParserTraining.steps)
    weights.add_argument("--threads", type=int, default=1, help="CPU threads")
    faces = commands.add_parser("faces", help="write procedural faces and their label maps")
    faces.add_argument("out_dir", type=Path)
    faces.add_argument("count", type=int)
    faces.add_argument("--seed", type=int, default=0, help="first seed")
    args = parser.parse_args()

    if args.command == "faces":
        write_faces(args.out_dir, range(args.seed, args.seed + args.count))
        log.info("wrote %d faces to %s", args.count, args.out_dir)
        return
    torch.set_num_threads(max(1, args.threads))
    with atomic_path(args.out) as tmp:
        torch.save(train_parser(ParserTraining(steps=args.steps)), tmp)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    cli.run(main)
