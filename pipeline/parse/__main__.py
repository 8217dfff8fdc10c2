"""`python -m pipeline.parse`: the face parsing stage.

weights  download facexlib's pretrained BiSeNet and verify it
shard    parse one shard of the split into label maps and list them in a manifest CSV
preview  draw the first images of a manifest with their label maps
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from pipeline import cli
from pipeline.config import ParsingConfig, load
from pipeline.errors import PipelineError
from pipeline.parse.manifest import LabelShard, read_manifest
from pipeline.parse.parser import FaceParser, parse_images
from pipeline.parse.preview import write_preview
from pipeline.parse.weights import download_weights
from pipeline.shards import shard_items

log = logging.getLogger("pipeline.parse")


def parse_shard(
    cfg: ParsingConfig, weights: Path, split_csv: Path, shard: int, labels_dir: Path, manifest: Path
) -> None:
    """Parse the images of one shard of the split to labels_dir/{image_id}.png, then list them."""
    work = LabelShard.of(split_csv, shard, cfg.shard_size, labels_dir)
    parser = FaceParser(weights, cfg.size, cfg.device, cfg.amp)
    log.info("shard %d: %d images on %s (%s)", shard, len(work.rows), parser.device, parser.provenance)
    sources = [row.path for row in work.rows]
    parsed = parse_images(parser, sources, work.labels, cfg.batch_size, cfg.workers, f"shard {shard}")
    work.write_manifest(manifest)
    log.info("shard %d: parsed %d, %d were already done; wrote %s", shard, parsed, len(work.rows) - parsed, manifest)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.parse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    weights = commands.add_parser("weights", help="download and verify facexlib's BiSeNet weights")
    weights.add_argument("--url", required=True)
    weights.add_argument("--out", type=Path, required=True)

    shard = commands.add_parser("shard", help="parse one shard of the split")
    given = shard.add_mutually_exclusive_group(required=True)
    given.add_argument("--parsing-json", help="the validated `parsing` config section as JSON (what the rule passes)")
    given.add_argument("--configfile", type=Path, help="a pipeline config YAML; validated, defaults filled in")
    shard.add_argument("--weights", type=Path, required=True, help="BiSeNet state dict")
    shard.add_argument("--split", type=Path, required=True, help="split CSV of the data stage")
    shard.add_argument("--shard", type=int, required=True, help="shard number, from 0")
    shard.add_argument("--labels-dir", type=Path, required=True, help="where {image_id}.png label maps go")
    shard.add_argument("--manifest", type=Path, required=True, help="CSV listing the shard's label maps")
    shard.add_argument("--threads", type=int, default=1, help="CPU threads for the model when it runs on the CPU")

    show = commands.add_parser("preview", help="grid of images, label maps and a legend")
    show.add_argument("--manifest", type=Path, required=True)
    show.add_argument("--count", type=int, default=6, help="how many faces")
    show.add_argument("--out", type=Path, required=True)

    folder = commands.add_parser("images", help="parse the png/jpg images of a folder, or one shard of them")
    folder.add_argument("--parsing-json", required=True, help="the validated `parsing` config section as JSON")
    folder.add_argument("--weights", type=Path, required=True, help="BiSeNet state dict")
    folder.add_argument("--images", type=Path, required=True, help="folder of images")
    folder.add_argument("--out-dir", type=Path, required=True, help="where {stem}.png label maps go")
    folder.add_argument("--label-size", type=int, help="resize label maps (nearest) to this size")
    folder.add_argument("--shard", type=int, help="only this shard of the sorted images (parsing.shard_size each)")
    folder.add_argument("--threads", type=int, default=1)

    args = parser.parse_args()
    if args.command == "images":
        cfg = ParsingConfig.from_dict(json.loads(args.parsing_json))
        torch.set_num_threads(max(1, args.threads))
        sources = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not sources:
            raise PipelineError(f"{args.images}: no png/jpg images to parse")
        if args.shard is not None:
            sources = shard_items(sources, args.shard, cfg.shard_size)
        parser_ = FaceParser(args.weights, cfg.size, cfg.device, cfg.amp)
        destinations = [args.out_dir / f"{source.stem}.png" for source in sources]
        parsed = parse_images(parser_, sources, destinations, cfg.batch_size, cfg.workers, "re-segment",
                              args.label_size)
        log.info("parsed %d of %d images of %s into %s", parsed, len(sources), args.images, args.out_dir)
    elif args.command == "weights":
        download_weights(args.url, args.out)
    elif args.command == "shard":
        section = load(args.configfile)["parsing"] if args.configfile else json.loads(args.parsing_json)
        torch.set_num_threads(max(1, args.threads))
        parse_shard(
            ParsingConfig.from_dict(section), args.weights, args.split, args.shard, args.labels_dir, args.manifest
        )
    else:
        rows = read_manifest(args.manifest)[: args.count]
        write_preview([row["path"] for row in rows], [row["label"] for row in rows], args.out)


if __name__ == "__main__":
    cli.run(main)
