"""The pipeline's one configuration: config.yaml's defaults with a run's own files over them,
validated against the workflow schema, then handed to each stage as a small frozen dataclass of
the section that stage reads.

Where each fact is written once:
- config.yaml holds the default of every key of its sections. The workflow reads it before a
  run's --configfile, and `load` does the same, so a run's file names only what it changes.
- The schema (workflow/schemas/config.schema.yaml) holds types, ranges and descriptions, and no
  defaults.
- A model entry under `models:` names only what differs from a model's defaults, which are
  ModelConfig's field defaults (config.yaml's comment lists them; a test keeps the two equal).
- Each model and training setting declares its Role once, in its field (`setting`); every view
  of which settings matter (a model's identity, its run key, what tells its table row apart) is
  derived from the roles.
"""

from __future__ import annotations

import copy
import enum
import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.layout import REAL_ROW, REPLICATE_MARK, parse_replicate, replicate_name
from pipeline.models.architecture import NETWORK_FORMAT, SWITCH_STATS, generator_stride

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
DEFAULTS_PATH = Path(__file__).resolve().parents[1] / "config.yaml"


class ConfigError(PipelineError):
    """A config value the schema or a stage refuses; the message names the key."""


def load(*paths: str | Path) -> dict:
    """Read config YAMLs as the workflow does with `--configfile A B`: config.yaml's defaults,
    then each file over the one before (nested keys merged), validated."""
    import yaml

    layers = []
    for path in paths:
        try:
            layer = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})".replace("\n", " ")) from None
        if not isinstance(layer, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
        layers.append(layer)
    return resolve(*layers)


def resolve(*layers: dict) -> dict:
    """config.yaml's defaults with each layer merged over the one before (nested keys merged, as
    Snakemake merges --configfile files), validated."""
    from snakemake.utils import update_config

    config = copy.deepcopy(_defaults())
    for layer in layers:
        update_config(config, copy.deepcopy(layer))
    return validate(config)


@functools.cache
def _defaults() -> dict:
    import yaml

    return yaml.safe_load(DEFAULTS_PATH.read_text())


@functools.cache
def schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate(config: dict) -> dict:
    """Check a whole config (config.yaml's keys and a run's over them) against the schema, and
    what the schema cannot say (_check_models). Raises ConfigError with a one-line message
    naming the offending key; returns `config`."""
    _check(config)
    _check_models(config)
    return config


def _check(instance, ref: str | None = None, path: tuple[str, ...] = ()) -> None:
    """Raise the first schema error of `instance` (against the definition `ref` of the schema's
    $defs, or the whole schema), its key prefixed with `path`."""
    from jsonschema import Draft202012Validator

    part = schema() if ref is None else {"$ref": ref, "$defs": schema()["$defs"]}
    for error in Draft202012Validator(part).iter_errors(instance):
        error.path.extendleft(reversed(path))
        raise ConfigError(_describe(error))


def _check_models(config: dict) -> None:
    """Model names in `compare` exist, each model's training overrides are valid training
    settings, and its options fit its generator."""
    models = config["models"]
    if REAL_ROW in models:
        raise ConfigError(
            f"config key models.{REAL_ROW}: the name of the real-image row of the table; rename the model"
        )
    for index, name in enumerate(config["compare"]):
        if name not in models:
            raise ConfigError(f"config key compare.{index}: unknown model {name!r} (models: {', '.join(models)})")
    for name, entry in models.items():
        key = f"models.{name}"
        if REPLICATE_MARK in name:
            raise ConfigError(f"config key {key}: {REPLICATE_MARK!r} marks a replicate's run (spade{REPLICATE_MARK}1); "
                              "rename the model")
        _check(entry.get("training", {}), "#/$defs/training", ("models", name, "training"))
        model = ModelConfig.from_config(config, name)
        if model.generator == "pix2pixhd":
            if model.vae:
                raise ConfigError(f"config key {key}.vae: the pix2pixhd generator has no VAE; use generator: spade")
            if model.norm != "batch":
                raise ConfigError(f"config key {key}.norm: SPADE's norm; the pix2pixhd generator uses instance norm")
        elif model.unnormalized_first:
            raise ConfigError(f"config key {key}.unnormalized_first: only for generator: pix2pixhd")
        if model.generator == "spade_unpool":
            if model.vae:
                raise ConfigError(f"config key {key}.vae: the spade_unpool generator has no VAE; use generator: spade")
            if model.num_upsampling_layers != "normal":
                raise ConfigError(
                    f"config key {key}.num_upsampling_layers: the spade_unpool generator has one depth, normal"
                )
        if model.generator == "oasis":
            if model.vae:
                raise ConfigError(f"config key {key}.vae: OASIS has no encoder; its noise is drawn per image")
            if model.num_upsampling_layers != "normal":
                raise ConfigError(f"config key {key}.num_upsampling_layers: the oasis generator has one depth, normal")
        elif model.training.ema_decay is not None:
            raise ConfigError(f"config key {key}.training.ema_decay: OASIS's moving average; only for generator: oasis")
        if model.positional_encoding and model.generator != "clade":
            raise ConfigError(f"config key {key}.positional_encoding: CLADE's; only for generator: clade")
        if model.norm != "switch" and set(model.switch_stats) != set(SWITCH_STATS):
            raise ConfigError(f"config key {key}.switch_stats: only for norm: switch")
        training = model.training
        if name in config["compare"]:  # a model the run does not train may be defined for another resolution
            model.check_resolution()
        if training.batch_size % training.world_size:
            raise ConfigError(
                f"config key {key}: training.batch_size {training.batch_size} does not divide among "
                f"training.gpus x training.nodes = {training.world_size} processes"
            )


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
class CelebAMaskHQSource:
    archive_url: str
    archive_size: int | None
    archive_sha256: str | None
    dir: str
    retries: int
    timeout_s: float
    backoff_s: float


@dataclass(frozen=True)
class DataConfig:
    source: str
    folder: str | None
    ffhq: FfhqSource
    procedural: ProceduralSource
    celebamask_hq: CelebAMaskHQSource
    split: str
    val_in_train: bool
    subsample: int | None
    test_fraction: float
    seed: int

    @classmethod
    def from_dict(cls, section: dict) -> "DataConfig":
        """Build from the validated `data` section of the config."""
        return cls(
            **{
                **section,
                "ffhq": FfhqSource(**section["ffhq"]),
                "procedural": ProceduralSource(**section["procedural"]),
                "celebamask_hq": CelebAMaskHQSource(**section["celebamask_hq"]),
            }
        )

    @property
    def labels_from_masks(self) -> bool:
        """Whether the input label maps are the dataset's own masks (else the parser's)."""
        return self.source == "celebamask_hq"


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


class Role(enum.Enum):
    """What changing a model or training setting changes."""

    # The trained weights: the model is another one (a run of its own, beside the old one's),
    # and the setting tells its table row apart.
    MODEL = "model"
    # How far training goes (iterations, decay_start): the model changes, but a run may resume
    # under a new value, since the steps taken so far stay what they were.
    SCHEDULE = "schedule"
    # How a run is carried out (checkpoints, workers, devices), not what it trains.
    OPERATIONAL = "operational"


def setting(role: Role = Role.MODEL, *, column: bool = False, added_later: bool = False, **kwargs):
    """A dataclass field for a model or training setting. `column`: the table has a column of
    its own for it, so the row's settings cell leaves it out. `added_later`: added after models
    were trained; left out of a model's identity while it has its default, so that those models
    keep their runs and their jobs do not rerun. Other keyword arguments go to `field`."""
    return field(metadata={"role": role, "column": column, "added_later": added_later}, **kwargs)


def _identity(settings) -> dict:
    """A settings dataclass as a dict, nested ones included, without the settings added later
    that still have their default."""
    out = {}
    for item in fields(settings):
        value = getattr(settings, item.name)
        if item.metadata.get("added_later") and value == item.default:
            continue
        out[item.name] = _identity(value) if is_dataclass(value) else copy.deepcopy(value)
    return out


def _with_role(settings: dict, cls, role: Role) -> dict:
    """The entries of `settings` (a dataclass's, as a dict) whose fields have `role`."""
    return {item.name: settings[item.name] for item in fields(cls)
            if item.metadata["role"] is role and item.name in settings}


@dataclass(frozen=True)
class TrainingConfig:
    """The `training` section, with a model's overrides applied; config.yaml holds the defaults."""

    resolution: int = setting(column=True)
    batch_size: int = setting()
    iterations: int = setting(Role.SCHEDULE, column=True)
    decay_start: int = setting(Role.SCHEDULE)
    checkpoint_every: int = setting(Role.OPERATIONAL)
    keep_checkpoints: int = setting(Role.OPERATIONAL)
    sample_every: int = setting(Role.OPERATIONAL)
    lr_G: float = setting()
    lr_D: float = setting()
    beta1: float = setting()
    beta2: float = setting()
    lambda_feat: float = setting()
    lambda_vgg: float = setting()
    lambda_kld: float = setting()
    vgg: bool = setting()
    flip: bool = setting()
    amp: bool = setting()
    channels_last: bool = setting()
    compile: bool = setting(Role.OPERATIONAL)
    device: str = setting(Role.OPERATIONAL)
    gpus: int = setting(Role.OPERATIONAL)
    nodes: int = setting(Role.OPERATIONAL)
    workers: int = setting(Role.OPERATIONAL)
    seed: int = setting()
    # Which of the model's independent training runs this is (training.replicates of them); 0 is
    # the run every model had before replicates existed, which keeps its seed, files and jobs.
    replicate: int = setting(column=True, added_later=True, default=0)
    lambda_labelmix: float = setting(added_later=True, default=10.0)
    ema_decay: float | None = setting(added_later=True, default=None)
    tensorboard: bool = setting(Role.OPERATIONAL, added_later=True, default=False)

    @classmethod
    def defaults(cls) -> "TrainingConfig":
        """config.yaml's shared training settings."""
        return cls(**_without_replicates(_defaults()["training"]))

    @property
    def run_seed(self) -> int:
        """The seed of this run's data order, flips, initial weights and VAE noise: `seed` for
        replicate 0, else the first 31 bits of sha256("{seed}/{replicate}"), so that runs differ
        in every random draw and each one is reproducible from the config alone."""
        if self.replicate == 0:
            return self.seed
        digest = hashlib.sha256(f"{self.seed}/{self.replicate}".encode()).digest()
        return int.from_bytes(digest[:4], "big") >> 1

    @property
    def world_size(self) -> int:
        """Training processes in all."""
        return self.gpus * self.nodes


@dataclass(frozen=True)
class ModelConfig:
    """One entry under `models:`; its field defaults are a model's defaults."""

    name: str = setting()
    generator: str = setting()
    training: TrainingConfig = setting()
    norm: str = setting(default="batch")
    vae: bool = setting(default=False)
    num_upsampling_layers: str = setting(default="normal")
    ngf: int = setting(default=64)
    ndf: int = setting(default=64)
    num_D: int = setting(default=2)
    n_layers_D: int = setting(default=4)
    z_dim: int = setting(default=256)
    resnet_downsample: int = setting(default=4)
    resnet_blocks: int = setting(default=9)
    unnormalized_first: int = setting(default=0)
    # Every model trained before the setting existed mixed all three statistics.
    switch_stats: tuple[str, ...] = setting(default=SWITCH_STATS, added_later=True)
    positional_encoding: bool = setting(default=False, added_later=True)

    def __post_init__(self) -> None:
        # In SWITCH_STATS' order and a tuple, however the config listed them: one model, one key.
        object.__setattr__(self, "switch_stats", tuple(s for s in SWITCH_STATS if s in self.switch_stats))

    @classmethod
    def from_config(cls, config: dict, name: str) -> "ModelConfig":
        """Model `name` of a config, its training overrides applied to the shared settings (its
        `published` figures are the table's, not the model's). `name` may be a replicate's run
        (`spade#1`, replicate_name): the model's settings with that replicate's seed."""
        model, replicate = parse_replicate(name)
        if replicate_name(model, replicate) != name:
            runs = f"{model}, {replicate_name(model, 1)}, ..."
            raise ConfigError(f"{name}: not a run's name; model {model}'s runs are {runs}")
        if replicate >= replicates(config, model):
            raise ConfigError(f"{name}: model {model} has {replicates(config, model)} run(s) (training.replicates)")
        entry = dict(config["models"][model])
        entry.pop("published", None)
        training = _without_replicates({**config["training"], **entry.pop("training", {})})
        return cls(name=name, training=TrainingConfig(**training, replicate=replicate), **entry)

    def identity(self) -> dict:
        """Every setting: what the model's jobs rerun on (the rules pass it as `to_json`)."""
        return _identity(self)

    def to_json(self) -> str:
        return json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_settings(json.loads(text))

    @classmethod
    def from_settings(cls, settings: dict) -> "ModelConfig":
        """The inverse of `identity` and of dataclasses.asdict (as stored in a generator.pt)."""
        return cls(**{**settings, "training": TrainingConfig(**settings["training"])})

    def run_key(self) -> str:
        """Names the checkpoints of one setting: the settings of role MODEL and the network
        format. A changed architecture or loss starts a new run beside the old one instead of
        resuming weights that no longer fit; a changed schedule or operational setting resumes."""
        identity = self.identity()
        settings = {
            **_with_role(identity, ModelConfig, Role.MODEL),
            "training": _with_role(identity["training"], TrainingConfig, Role.MODEL),
            "network_format": NETWORK_FORMAT,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    def distinguishing_settings(self) -> dict[str, object]:
        """What tells this model's table row apart: the settings that change what it trains
        (roles MODEL and SCHEDULE) and have no column of their own, where they differ from its
        generator's defaults with config.yaml's training settings; model keys first."""
        defaults = ModelConfig(name=self.name, generator=self.generator, training=TrainingConfig.defaults())
        changed = {}
        for mine, base in ((self, defaults), (self.training, defaults.training)):
            for item in fields(mine):
                meta, value = item.metadata, getattr(mine, item.name)
                if meta["role"] is not Role.OPERATIONAL and not meta["column"] and not is_dataclass(value):
                    if value != getattr(base, item.name):
                        changed[item.name] = value
        return changed

    def check_packages(self) -> None:
        """The optional packages the settings ask for are installed."""
        if self.training.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError(f"config key training.tensorboard (model {self.name}): needs the tensorboard package; "
                              "install it with pip install -e '.[tensorboard]'")

    def check_resolution(self) -> None:
        """The working resolution must be a multiple of the model's total stride."""
        if self.training.resolution % self.stride:
            raise ConfigError(
                f"config key models.{parse_replicate(self.name)[0]}: training.resolution {self.training.resolution} "
                f"is not a multiple of {self.stride}, this model's total stride"
            )

    @property
    def draws_noise(self) -> bool:
        """Whether the generator takes z_dim noise per image: VAE models' prior, OASIS's 3D noise."""
        return self.vae or self.generator == "oasis"

    @property
    def stride(self) -> int:
        """How many times the generator halves (pix2pixHD) or doubles (SPADE) its grid, or OASIS's
        discriminator halves the image, as a factor."""
        return generator_stride(self.generator, self.num_upsampling_layers, self.resnet_downsample)


def replicates(config: dict, model: str) -> int:
    """How many independent training runs model `model` has (training.replicates, or its own)."""
    return config["models"][model].get("training", {}).get("replicates", config["training"]["replicates"])


def replicate_names(config: dict, model: str) -> list[str]:
    """The runs of model `model`, replicate 0 first."""
    return [replicate_name(model, replicate) for replicate in range(replicates(config, model))]


def _without_replicates(training: dict) -> dict:
    """A training section without `replicates`: how many runs a model has is not a setting of any
    one of them, so that growing it leaves the existing runs' identities, and jobs, as they are."""
    return {key: value for key, value in training.items() if key != "replicates"}


# The metrics keys that Inception statistics are computed with: the real test images' are
# computed once per resolution, and the other metrics keys must not make them rerun.
INCEPTION_KEYS = ("inception_weights", "batch_size", "fid_dims", "device")


def section_json(config: dict, name: str, keys: tuple[str, ...] | None = None) -> str:
    """One config section (or its `keys`) as compact JSON: what a rule passes to its stage's
    CLI, so that Snakemake reruns a stage exactly when what it reads changes."""
    section = config[name] if keys is None else {key: config[name][key] for key in keys}
    return json.dumps(section, sort_keys=True, separators=(",", ":"))
