"""`python -m pipeline.data.masks`: one shard of CelebAMask-HQ's label maps, merged from the
dataset's part masks (pipeline.data.celebamask_hq) into {labels-dir}/{image_id}.png and listed in
a manifest, as the parsing stage lists its parses. A merge already there is kept."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline import cli
from pipeline.data.celebamask_hq import write_merged
from pipeline.parse.manifest import LabelShard
from pipeline.progress import progress

log = logging.getLogger("pipeline.data.masks")


def merge_shard(split_csv: Path, shard: int, shard_size: int, labels_dir: Path, manifest: Path) -> None:
    work = LabelShard.of(split_csv, shard, shard_size, labels_dir)
    pairs = progress(zip(work.rows, work.labels), total=len(work.rows), desc=f"shard {shard}", unit="img")
    merged = sum(write_merged(row.path, label) for row, label in pairs)
    work.write_manifest(manifest)
    log.info("shard %d: merged %d, %d were already done; wrote %s", shard, merged, len(work.rows) - merged, manifest)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.data.masks", description=__doc__)
    parser.add_argument("--split", type=Path, required=True, help="split CSV of the data stage")
    parser.add_argument("--shard", type=int, required=True, help="shard number, from 0")
    parser.add_argument("--shard-size", type=int, required=True, help="images per shard (parsing.shard_size)")
    parser.add_argument("--labels-dir", type=Path, required=True, help="where {image_id}.png label maps go")
    parser.add_argument("--manifest", type=Path, required=True, help="CSV listing the shard's label maps")
    args = parser.parse_args()
    merge_shard(args.split, args.shard, args.shard_size, args.labels_dir, args.manifest)


if __name__ == "__main__":
    cli.run(main)
