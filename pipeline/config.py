"""The pipeline's one configuration: validated against the workflow schema, then handed to
each stage as a small frozen dataclass of the section that stage reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(PipelineError):
    """A config value the schema or a stage refuses; the message names the key."""


def validate(config: dict) -> dict:
    """Validate `config` in place against the schema, filling in defaults.

    Raises ConfigError with a one-line message naming the offending key.
    """
    from jsonschema import ValidationError
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate as snakemake_validate

    try:
        snakemake_validate(config, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as err:
        # snakemake keeps only the text of jsonschema's error; the error itself, with the
        # path of the offending key, is the context its WorkflowError was raised in.
        if not isinstance(err.__context__, ValidationError):
            raise
        raise ConfigError(_describe(err.__context__)) from None
    return config


def load(path: str | Path) -> dict:
    """Read a config YAML and validate it (defaults filled in)."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})".replace("\n", " ")) from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return validate(config)


def _describe(error) -> str:
    key = ".".join(str(part) for part in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        prefix = "" if key == "<top level>" else key + "."
        names = ", ".join(prefix + name for name in unknown)
        return f"unknown config key {names} (allowed here: {', '.join(sorted(allowed))})"
    return f"config key {key}: {error.message}"


@dataclass(frozen=True)
class FfhqSource:
    metadata: str
    metadata_md5: str | None
    mirror: str | None
    kind: str
    dir: str
    workers: int
    retries: int
    timeout_s: float
    backoff_s: float


@dataclass(frozen=True)
class DataConfig:
    source: str
    folder: str | None
    ffhq: FfhqSource
    subsample: int | None
    test_fraction: float
    seed: int

    @classmethod
    def from_dict(cls, section: dict) -> "DataConfig":
        """Build from the validated `data` section of the config."""
        return cls(**{**section, "ffhq": FfhqSource(**section["ffhq"])})


@dataclass(frozen=True)
class ParsingConfig:
    weights: str | None
    weights_url: str
    size: int
    device: str
    amp: bool
    batch_size: int
    workers: int
    shard_size: int

    @classmethod
    def from_dict(cls, section: dict) -> "ParsingConfig":
        """Build from the validated `parsing` section of the config."""
        return cls(**section)


def section_json(config: dict, name: str) -> str:
    """One config section as compact JSON: what a rule passes to its stage's CLI, so that
    Snakemake reruns a stage exactly when its own section changes."""
    return json.dumps(config[name], sort_keys=True, separators=(",", ":"))
