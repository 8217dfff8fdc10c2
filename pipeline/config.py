"""The pipeline's one configuration: validated against the workflow schema, then handed to
each stage as a small frozen dataclass of the section that stage reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import PipelineError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
DEFAULTS_PATH = Path(__file__).resolve().parents[1] / "config.yaml"


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
    _check_models(config)
    return config


def _check_models(config: dict) -> None:
    """What the schema cannot say: model names in `compare` exist, each model's training
    overrides are valid training settings, and its options fit its generator."""
    import yaml
    from jsonschema import Draft202012Validator

    models = config["models"]
    if REAL_ROW in models:
        raise ConfigError(
            f"config key models.{REAL_ROW}: the name of the real-image row of the table; rename the model"
        )
    for index, name in enumerate(config["compare"]):
        if name not in models:
            raise ConfigError(f"config key compare.{index}: unknown model {name!r} (models: {', '.join(models)})")
    training_schema = yaml.safe_load(SCHEMA_PATH.read_text())["$defs"]["training"]
    for name, entry in models.items():
        key = f"models.{name}"
        for error in Draft202012Validator(training_schema).iter_errors(entry.get("training", {})):
            error.path.extendleft(reversed(["models", name, "training"]))
            raise ConfigError(_describe(error))
        generator = entry["generator"]
        if generator == "pix2pixhd":
            if entry["vae"]:
                raise ConfigError(f"config key {key}.vae: the pix2pixhd generator has no VAE; use generator: spade")
            if entry["norm"] != "batch":
                raise ConfigError(f"config key {key}.norm: SPADE's norm; the pix2pixhd generator uses instance norm")
        elif entry["unnormalized_first"]:
            raise ConfigError(f"config key {key}.unnormalized_first: only for generator: pix2pixhd")
        if generator == "spade_unpool":
            if entry["vae"]:
                raise ConfigError(f"config key {key}.vae: the spade_unpool generator has no VAE; use generator: spade")
            if entry["num_upsampling_layers"] != "normal":
                raise ConfigError(
                    f"config key {key}.num_upsampling_layers: the spade_unpool generator has one depth, normal"
                )
        if entry["norm"] != "switch" and set(entry["switch_stats"]) != set(SWITCH_STATS):
            raise ConfigError(f"config key {key}.switch_stats: only for norm: switch")
        model = ModelConfig.from_config(config, name)
        if model.training.resolution % model.stride:
            raise ConfigError(
                f"config key {key}: training.resolution {model.training.resolution} is not a multiple of "
                f"{model.stride}, this generator's total stride"
            )
        training = model.training
        if training.batch_size % training.world_size:
            raise ConfigError(
                f"config key {key}: training.batch_size {training.batch_size} does not divide among "
                f"training.gpus x training.nodes = {training.world_size} processes"
            )


def load(*paths: str | Path) -> dict:
    """Read config YAMLs as the workflow does with `--configfile A B`: config.yaml's documented
    defaults, then each file over the one before (nested keys merged), validated."""
    import yaml
    from snakemake.utils import update_config

    config: dict = {}
    for path in (DEFAULTS_PATH, *paths):
        try:
            layer = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})".replace("\n", " ")) from None
        if not isinstance(layer, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
        update_config(config, layer)
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
class ProceduralSource:
    count: int
    size: int
    dir: str


@dataclass(frozen=True)
class DataConfig:
    source: str
    folder: str | None
    ffhq: FfhqSource
    procedural: ProceduralSource
    subsample: int | None
    test_fraction: float
    seed: int

    @classmethod
    def from_dict(cls, section: dict) -> "DataConfig":
        """Build from the validated `data` section of the config."""
        return cls(
            **{**section, "ffhq": FfhqSource(**section["ffhq"]), "procedural": ProceduralSource(**section["procedural"])}
        )


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


# The table row of real test images: the upper bound for accuracy and mIoU, FID's reference.
REAL_ROW = "real"

# Version of what the networks' state dicts hold for the same settings; raised when the code
# changes it (2: spectral norm as weight_orig/u/v, NVlabs' discriminator strides). It is part of
# a training run's key and of generator.pt, and a train rule parameter: a change retrains.
NETWORK_FORMAT = 2

# What switchable norm can mix (norm: switch, switch_stats), in the order of its mixing weights.
SWITCH_STATS = ("instance", "layer", "batch")

# Upsampling steps of the SPADE generator, per num_upsampling_layers.
SPADE_UPSAMPLINGS = {"normal": 5, "more": 6, "most": 7}


# Training settings that change how a run is carried out, not the model it gives.
OPERATIONAL_TRAINING_KEYS = frozenset(
    {"checkpoint_every", "keep_checkpoints", "sample_every", "workers", "compile", "device", "gpus", "nodes"}
)


@dataclass(frozen=True)
class TrainingConfig:
    resolution: int
    batch_size: int
    iterations: int
    decay_start: int
    checkpoint_every: int
    keep_checkpoints: int
    sample_every: int
    lr_G: float
    lr_D: float
    beta1: float
    beta2: float
    lambda_feat: float
    lambda_vgg: float
    lambda_kld: float
    vgg: bool
    flip: bool
    amp: bool
    channels_last: bool
    compile: bool
    device: str
    gpus: int
    nodes: int
    workers: int
    seed: int

    @property
    def world_size(self) -> int:
        """Training processes in all."""
        return self.gpus * self.nodes


@dataclass(frozen=True)
class ModelConfig:
    name: str
    generator: str
    norm: str
    vae: bool
    num_upsampling_layers: str
    ngf: int
    ndf: int
    num_D: int
    n_layers_D: int
    z_dim: int
    resnet_downsample: int
    resnet_blocks: int
    unnormalized_first: int
    training: TrainingConfig
    # Defaulted, so that a generator.pt saved before the setting existed reads as it was trained.
    switch_stats: tuple[str, ...] = SWITCH_STATS

    def __post_init__(self) -> None:
        # In SWITCH_STATS' order and a tuple, however the config listed them: one model, one key.
        object.__setattr__(self, "switch_stats", tuple(s for s in SWITCH_STATS if s in self.switch_stats))

    @classmethod
    def from_config(cls, config: dict, name: str) -> "ModelConfig":
        """Model `name` of a validated config, its training overrides applied to the shared
        settings (its `published` figures are the table's, not the model's)."""
        entry = dict(config["models"][name])
        entry.pop("published", None)
        training = TrainingConfig(**{**config["training"], **entry.pop("training", {})})
        return cls(name=name, training=training, **entry)

    def identity(self) -> dict:
        """All settings, as a model's identity: what its jobs' reruns and its checkpoints' run key
        follow. A setting added after models were trained is left out while at its default, so
        that those models keep their runs (switch_stats: every model before it mixed all three)."""
        settings = asdict(self)
        if self.switch_stats == SWITCH_STATS:
            del settings["switch_stats"]
        return settings

    def to_json(self) -> str:
        """All settings as compact JSON: what the rules pass, so a model's jobs rerun exactly
        when its own settings change."""
        return json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_settings(json.loads(text))

    @classmethod
    def from_settings(cls, settings: dict) -> "ModelConfig":
        """The inverse of dataclasses.asdict (as stored in a trained generator.pt)."""
        return cls(**{**settings, "training": TrainingConfig(**settings["training"])})

    def distinguishing_settings(self) -> dict[str, object]:
        """The settings in which this model differs from the defaults of its generator, model
        keys first (operational training keys left out): what tells its table row apart."""
        defaults = ModelConfig.from_config(
            validate({"models": {self.name: {"generator": self.generator}}, "compare": [self.name]}), self.name
        )
        mine, base = asdict(self), asdict(defaults)
        changed = {k: v for k, v in mine.items() if k not in ("name", "training") and v != base[k]}
        changed.update(
            (k, v)
            for k, v in mine["training"].items()
            if k not in OPERATIONAL_TRAINING_KEYS and v != base["training"][k]
        )
        return changed

    @property
    def stride(self) -> int:
        """How many times the generator halves (pix2pixHD) or doubles (SPADE) its grid, as a factor."""
        steps = self.resnet_downsample if self.generator == "pix2pixhd" else SPADE_UPSAMPLINGS[self.num_upsampling_layers]
        return 2**steps


def section_json(config: dict, name: str) -> str:
    """One config section as compact JSON: what a rule passes to its stage's CLI, so that
    Snakemake reruns a stage exactly when its own section changes."""
    return json.dumps(config[name], sort_keys=True, separators=(",", ":"))
