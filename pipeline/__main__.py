"""`python -m pipeline describe --config my-run.yaml [more.yaml ...] --model NAME [--flops]`:
parameter counts of a model's networks as JSON, e.g. {"generator": 92538819, "discriminator":
5566594, "encoder": null}; with --flops also "generator_gflops", the generator's forward pass on
one label map at the model's resolution in GFLOPs (2 per multiply-add of its convolutions and
matrix products, as torch's FlopCounterMode counts them). The config files are read as the
workflow reads --configfile: config.yaml's defaults, then each file over the one before."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline import cli
from pipeline.config import ConfigError, ModelConfig, load


def describe(config: dict, name: str, flops: bool = False) -> dict[str, int | float | None]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.labelmaps import NUM_CLASSES
    from pipeline.models.networks import build, parameter_count

    if name not in config["models"]:
        raise ConfigError(f"--model {name}: no such entry under models (models: {', '.join(config['models'])})")
    model = ModelConfig.from_config(config, name)
    networks = build(model)
    counts = {role: parameter_count(getattr(networks, role)) for role in ("generator", "discriminator", "encoder")}
    if flops:
        size = model.training.resolution
        # Blocky classes, as a face's regions are: CLADE's positional encoding has regions to encode.
        blocks = torch.randint(0, NUM_CLASSES, (1, size // 16, size // 16), generator=torch.Generator().manual_seed(0))
        labels = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)
        seg = torch.nn.functional.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            networks.generator.eval()(seg)
        counts["generator_gflops"] = round(counter.get_total_flops() / 1e9, 2)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("describe", help="parameter counts of a model's networks")
    show.add_argument(
        "--config", type=Path, nargs="+", default=[], help="config YAMLs over config.yaml's defaults, in order"
    )
    show.add_argument("--model", required=True, help="a name under models:")
    show.add_argument("--flops", action="store_true", help="also the generator's GFLOPs per image (one forward pass)")
    args = parser.parse_args()
    print(json.dumps(describe(load(*args.config), args.model, args.flops)))


if __name__ == "__main__":
    cli.run(main)
