"""`python -m pipeline.data`: write the train/test split of verified face images.

The rule passes the validated `data` config section as JSON; by hand, pass a config file.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

from pipeline import cli
from pipeline.config import DataConfig, load
from pipeline.data import celebamask_hq, ffhq, folder, split
from pipeline.data.procedural import write_faces

log = logging.getLogger("pipeline.data")


def prepare(cfg: DataConfig, threads: int) -> list[split.SplitRow]:
    """Choose the subsample, make sure each chosen image is on disk and verified, split it."""
    if cfg.source == "celebamask_hq":
        return celebamask_hq.prepare(cfg, threads)
    if cfg.source == "ffhq":
        entries = ffhq.read_metadata(ffhq.metadata_path(cfg.ffhq), cfg.ffhq.kind)
        chosen = split.choose(entries, cfg.subsample, cfg.seed)
        paths = ffhq.download([entries[image_id] for image_id in chosen], cfg.ffhq)
    else:
        if cfg.source == "procedural":
            drawn = Path(cfg.procedural.dir)
            ids = write_faces(drawn, range(cfg.procedural.count), cfg.procedural.size)
            candidates = {image_id: drawn / "images" / f"{image_id}.png" for image_id in ids}
        else:
            candidates = folder.find_images(cfg.folder)
        chosen = split.choose(candidates, cfg.subsample, cfg.seed)
        paths = {image_id: candidates[image_id] for image_id in chosen}
        folder.verify(paths, workers=threads)
    return split.assign(chosen, paths, cfg.test_fraction)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.data", description=__doc__)
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--data-json", help="the validated `data` config section as JSON (what the rule passes)")
    given.add_argument("--configfile", type=Path, help="a pipeline config YAML, read over config.yaml's defaults")
    parser.add_argument("--out", type=Path, required=True, help="split CSV to write")
    parser.add_argument("--threads", type=int, default=1, help="threads for decoding images")
    args = parser.parse_args()

    if args.configfile:
        section = load(args.configfile)["data"]
    else:
        section = json.loads(args.data_json)
    rows = prepare(DataConfig.from_dict(section), args.threads)
    split.write_split(rows, args.out)
    counts = Counter(row.split for row in rows)
    log.info("wrote %s: %d train, %d test images", args.out, counts["train"], counts["test"])


if __name__ == "__main__":
    cli.run(main)
