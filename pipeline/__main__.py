"""`python -m pipeline describe --config my-run.yaml [more.yaml ...] --model NAME`: parameter
counts of a model's networks as JSON, e.g. {"generator": 92538819, "discriminator": 5566594,
"encoder": null}. The config files are read as the workflow reads --configfile: config.yaml's
defaults, then each file over the one before."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline import cli
from pipeline.config import ConfigError, ModelConfig, load


def describe(config: dict, name: str) -> dict[str, int | None]:
    from pipeline.models.networks import build, parameter_count

    if name not in config["models"]:
        raise ConfigError(f"--model {name}: no such entry under models (models: {', '.join(config['models'])})")
    networks = build(ModelConfig.from_config(config, name))
    return {role: parameter_count(getattr(networks, role)) for role in ("generator", "discriminator", "encoder")}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("describe", help="parameter counts of a model's networks")
    show.add_argument(
        "--config", type=Path, nargs="+", default=[], help="config YAMLs over config.yaml's defaults, in order"
    )
    show.add_argument("--model", required=True, help="a name under models:")
    args = parser.parse_args()
    print(json.dumps(describe(load(*args.config), args.model)))


if __name__ == "__main__":
    cli.run(main)
