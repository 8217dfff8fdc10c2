"""The config: documented defaults, and one-line errors naming the key."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from dataclasses import MISSING, fields

import pytest
import yaml
from support import REPO

from pipeline.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    ParsingConfig,
    Role,
    TrainingConfig,
    load,
    resolve,
    schema,
)
from pipeline.models.architecture import SWITCH_STATS


def schema_keys(part: dict, prefix: str = "") -> set[str]:
    """The leaf keys an object of the schema declares (the models' entries are free-form names)."""
    keys = set()
    for key, value in part.get("properties", {}).items():
        if "$ref" in value:
            value = schema()["$defs"][value["$ref"].rsplit("/", 1)[-1]]
        nested = value.get("type") == "object" and "properties" in value
        keys |= schema_keys(value, f"{prefix}{key}.") if nested else {prefix + key}
    return keys


def leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        keys |= leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


def test_config_yaml_gives_every_key_of_the_schema_a_default_and_the_schema_gives_none():
    """One place owns each default: config.yaml holds every key's (the schema's and the
    dataclasses' fields are the same keys), the schema only types and ranges."""
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    shipped_models = shipped.pop("models")
    assert leaf_keys(shipped) == schema_keys(schema()) - {"models"}
    assert '"default":' not in json.dumps(schema())
    config = resolve()
    DataConfig.from_dict(config["data"])
    ParsingConfig.from_dict(config["parsing"])
    # Every training key is a TrainingConfig field but `replicates`: how many runs a model has
    # is not a setting of any one run (its `replicate` is).
    assert set(config["training"]) - {"replicates"} == {f.name for f in fields(TrainingConfig)} - {"replicate"}
    assert TrainingConfig.defaults().replicate == 0
    assert set(shipped_models) == set(config["models"]) and set(config["compare"]) <= set(shipped_models)


def test_config_yaml_lists_the_model_keys_with_modelconfigs_defaults():
    """A model entry names only what differs from ModelConfig's defaults; config.yaml's comment
    lists them (`key: default`) and must say what the dataclass says, for every key the schema
    allows in an entry."""
    comment = (REPO / "config.yaml").read_text().split("models:\n", 1)[1].split("\n  spade:")[0]
    defaults = {f.name: f.default for f in fields(ModelConfig) if f.default is not MISSING}
    entry_keys = set(schema()["$defs"]["model"]["properties"]) - {"generator", "training", "published"}
    assert set(defaults) == entry_keys
    for key, value in defaults.items():
        shown = "[" + ", ".join(value) + "]" if isinstance(value, tuple) else yaml.safe_dump(value).split("\n")[0]
        assert re.search(rf"(?<!\w){key}: {re.escape(shown)}(?!\w)", comment), f"config.yaml's comment on {key}: {shown}"


def test_defaults_fill_nested_sections():
    config = resolve({"data": {"ffhq": {"workers": 3}}})
    assert config["data"]["ffhq"]["workers"] == 3
    assert config["data"]["ffhq"]["kind"] == "images1024x1024"
    assert config["data"]["test_fraction"] == 0.2
    DataConfig.from_dict(config["data"])  # every key the schema has, the dataclass has


@pytest.mark.parametrize(
    "config, message",
    [
        ({"data": {"ffhq": {"workers": "many"}}}, r"^config key data\.ffhq\.workers: 'many' is not of type 'integer'$"),
        ({"data": {"ffhq": {"workers": 0}}}, r"^config key data\.ffhq\.workers: 0 is less than the minimum of 1$"),
        ({"data": {"test_fraction": 1.0}}, r"^config key data\.test_fraction: 1\.0 is greater than or equal"),
        ({"data": {"subsample": 1}}, r"^config key data\.subsample: 1 is less than the minimum of 2$"),
        ({"data": {"source": "s3"}}, r"^config key data\.source: 's3' is not one of"),
        ({"data": {"source": "folder"}}, r"^config key data\.folder: None is not of type 'string'$"),
        ({"data": {"ffhq": {"metadata_md5": "xyz"}}}, r"^config key data\.ffhq\.metadata_md5: 'xyz' does not match"),
        ({"data": {"ffhq": {"mirorr": "http://x"}}}, r"^unknown config key data\.ffhq\.mirorr \(allowed here: .*mirror"),
        ({"trainng": {}}, r"^unknown config key trainng \(allowed here: compare, data, metrics, models, parsing, training\)$"),
            ({"parsing": {"size": 100}}, r"^config key parsing\.size: 100 is not a multiple of 32$"),
            ({"parsing": {"device": "tpu"}}, r"^config key parsing\.device: 'tpu' is not one of"),
            ({"parsing": {"shard_size": 0}}, r"^config key parsing\.shard_size: 0 is less than the minimum of 1$"),
            ({"compare": ["spade", "spaed"]}, r"^config key compare\.1: unknown model 'spaed' \(models: spade, "),
            ({"models": {"spade": {"generator": "spade", "training": {"batch_size": 0}}}, "compare": ["spade"]},
             r"^config key models\.spade\.training\.batch_size: 0 is less than the minimum of 1$"),
            ({"models": {"spade": {"generator": "spade", "training": {"lr": 1}}}, "compare": ["spade"]},
             r"^unknown config key models\.spade\.training\.lr \(allowed here: "),
            ({"models": {"pix2pixhd": {"generator": "pix2pixhd", "vae": True}}, "compare": ["pix2pixhd"]},
             r"^config key models\.pix2pixhd\.vae: the pix2pixhd generator has no VAE"),
            ({"models": {"spade": {"generator": "spade", "norm": "group"}}}, r"^config key models\.spade\.norm: 'group'"),
            ({"models": {"spade": {"generator": "stylegan"}}}, r"^config key models\.spade\.generator: 'stylegan'"),
            ({"training": {"resolution": 80}}, r"^config key models\.spade: training\.resolution 80 is not a multiple of 32"),
            ({"models": {"u": {"generator": "spade_unpool", "vae": True}}, "compare": ["u"]},
             r"^config key models\.u\.vae: the spade_unpool generator has no VAE"),
            ({"models": {"u": {"generator": "spade_unpool", "num_upsampling_layers": "more"}}, "compare": ["u"]},
             r"^config key models\.u\.num_upsampling_layers: the spade_unpool generator has one depth, normal$"),
            ({"models": {"s": {"generator": "spade", "switch_stats": ["instance", "layer"]}}, "compare": ["s"]},
             r"^config key models\.s\.switch_stats: only for norm: switch$"),
            ({"models": {"s": {"generator": "spade", "positional_encoding": True}}, "compare": ["s"]},
             r"^config key models\.s\.positional_encoding: CLADE's; only for generator: clade$"),
            ({"models": {"o": {"generator": "oasis", "vae": True}}, "compare": ["o"]},
             r"^config key models\.o\.vae: OASIS has no encoder; its noise is drawn per image$"),
            ({"models": {"s": {"generator": "spade", "training": {"ema_decay": 0.999}}}, "compare": ["s"]},
             r"^config key models\.s\.training\.ema_decay: OASIS's moving average; only for generator: oasis$"),
            ({"models": {"o": {"generator": "oasis", "training": {"resolution": 96}}}, "compare": ["o"]},
             r"^config key models\.o: training\.resolution 96 is not a multiple of 64, this model's total stride$"),
            ({"models": {"o": {"generator": "oasis", "training": {"ema_decay": 1}}}, "compare": ["o"]},
             r"^config key models\.o\.training\.ema_decay: 1 is greater than or equal to the maximum of 1$"),
            ({"models": {"s": {"generator": "spade", "norm": "switch", "switch_stats": ["batch"]}}, "compare": ["s"]},
             r"^config key models\.s\.switch_stats: \['batch'\] is too short$"),
            ({"models": {"spade": {"generator": "spade", "published": [{"paper": "x"}]}}, "compare": ["spade"]},
             r"^config key models\.spade\.published\.0: 'dataset' is a required property$"),
    ],
)
def test_bad_values_name_the_key_in_one_line(config, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve(config)
    assert "\n" not in str(err.value)


def test_load_names_the_file_it_cannot_read(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read config"):
        load(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml: a config file must be a mapping"):
        load(tmp_path / "list.yaml")


def test_load_reads_several_files_over_the_defaults_as_the_workflow_does(tmp_path):
    """`--configfile a.yaml b.yaml`: config.yaml first, then a, then b; nested keys merge, so a
    model added by one file sits beside the documented ones."""
    (tmp_path / "a.yaml").write_text("training: {resolution: 64, batch_size: 4}\nmodels: {mine: {generator: spade, ngf: 8}}\n")
    (tmp_path / "b.yaml").write_text("training: {batch_size: 2}\ncompare: [spade, mine]\n")
    config = load(tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert (config["training"]["resolution"], config["training"]["batch_size"]) == (64, 2)
    assert config["compare"] == ["spade", "mine"] and {"spade", "mine"} <= set(config["models"])
    assert config["models"]["mine"]["ngf"] == 8 and config["data"]["subsample"] == 10000


def test_describe_takes_several_config_files(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "a.yaml").write_text("models: {mine: {generator: spade, ngf: 64}}\n")
    (tmp_path / "b.yaml").write_text("models: {mine: {ngf: 32}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "describe", "--config", "a.yaml", "b.yaml", "--model", "mine"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert 0 < counts["generator"] < 92_538_819 / 3  # ngf 32: about a quarter of ngf 64's


def test_a_models_distinguishing_settings_are_what_differs_from_its_generators_defaults():
    config = resolve({"models": {"wide": {"generator": "spade", "ngf": 96, "training": {"lr_G": 2e-4, "device": "cpu"}}},
                      "compare": ["wide"]})
    assert ModelConfig.from_config(config, "wide").distinguishing_settings() == {"ngf": 96, "lr_G": 2e-4}  # not device
    defaults = resolve()
    settings = {name: ModelConfig.from_config(defaults, name).distinguishing_settings() for name in defaults["compare"]}
    assert settings == {"spade": {}, "spade_instance": {"norm": "instance"}, "spade_vae": {"vae": True},
                        "spade_switchnorm": {"norm": "switch"},
                        "spade_switchnorm_inln": {"norm": "switch", "switch_stats": ("instance", "layer")},
                        "spade_unpool": {"norm": "switch", "switch_stats": ("instance", "layer")},
                        "clade": {}, "oasis": {"z_dim": 64, "beta2": 0.999, "vgg": False, "ema_decay": 0.9999},
                        "pix2pixhd": {}, "pix2pixhd_noin": {"unnormalized_first": 2}}
    icpe = ModelConfig.from_config(defaults, "clade_icpe")
    assert icpe.distinguishing_settings() == {"positional_encoding": True}


def test_published_figures_are_not_a_setting_of_the_model():
    """They are context for the table: changing them must not change what the train rule sees."""
    plain = resolve({"models": {"spade": {"generator": "spade", "published": []}}, "compare": ["spade"]})
    cited = resolve({"models": {"spade": {"generator": "spade", "published": [{"paper": "p", "dataset": "d"}]}},
                     "compare": ["spade"]})
    assert ModelConfig.from_config(plain, "spade").to_json() == ModelConfig.from_config(cited, "spade").to_json()


def test_a_model_saved_before_switch_stats_existed_keeps_its_identity_and_loads():
    """Models trained before the setting existed mixed all three statistics: their generator.pt
    (settings without the key) must still load, and their run key and rule parameters must not
    change, or every existing model would retrain from step 0."""
    config = resolve()
    for name in ("spade", "spade_switchnorm", "pix2pixhd"):
        model = ModelConfig.from_config(config, name)
        assert "switch_stats" not in model.to_json()
        saved = json.loads(model.to_json())  # the settings as a generator.pt of before holds them
        assert ModelConfig.from_settings(saved) == model and model.switch_stats == SWITCH_STATS
    inln = ModelConfig.from_config(config, "spade_switchnorm_inln")
    assert json.loads(inln.to_json())["switch_stats"] == ["instance", "layer"]
    assert ModelConfig.from_json(inln.to_json()) == inln


def test_each_settings_role_decides_what_changing_it_changes():
    """Every training setting: a change reruns the model's jobs (its identity); it starts a new
    run (another run key) exactly for role MODEL; it shows in the row's settings unless its role is
    OPERATIONAL or the table has a column for it."""
    base = ModelConfig.from_config(resolve(), "spade")
    for item in fields(TrainingConfig):
        value = getattr(base.training, item.name)
        other = (not value) if isinstance(value, bool) else "cpu" if item.name == "device" else 0.5 if value is None \
            else value + 1
        changed = dataclasses.replace(base, training=dataclasses.replace(base.training, **{item.name: other}))
        role, column = item.metadata["role"], item.metadata["column"]
        assert changed.to_json() != base.to_json(), item.name
        assert (changed.run_key() != base.run_key()) == (role is Role.MODEL), item.name
        shown = item.name in changed.distinguishing_settings()
        assert shown == (role is not Role.OPERATIONAL and not column), item.name


def test_the_run_key_of_a_default_model_is_what_its_checkpoints_are_filed_under():
    """A run key names the folder of existing checkpoints: computing it differently would make
    every trained model start again from step 0 (NETWORK_FORMAT changes it on purpose)."""
    assert ModelConfig.from_config(resolve(), "spade").run_key() == "2b999f365134"
    demo = load(REPO / "workflow" / "demo" / "config.yaml")
    assert ModelConfig.from_config(demo, "spade").run_key() == "6baa4907a91a"


def test_tensorboard_without_its_package_is_a_config_error_saying_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    config = resolve({"models": {"spade": {"training": {"tensorboard": True}}}, "compare": ["spade"]})
    model = ModelConfig.from_config(config, "spade")
    model.check_packages()  # installed with the test extra
    assert ModelConfig.from_config(resolve({}), "spade").training.tensorboard is False
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else found(name, *a))
    with pytest.raises(ConfigError, match=r"^config key training\.tensorboard \(model spade\): .*pip install -e "
                                          r"'\.\[tensorboard\]'$"):  # fmt: skip
        model.check_packages()
    # The workflow says so before any job runs.
    layer = tmp_path / "tensorboard.yaml"
    layer.write_text(yaml.safe_dump({"models": {"spade": {"training": {"tensorboard": True}}}, "compare": ["spade"]}))
    done = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u, sys; f = u.find_spec; "
         "u.find_spec = lambda n, *a: None if n == 'tensorboard' else f(n, *a); "
         f"from snakemake.cli import main; sys.argv = ['snakemake', '-n', '--snakefile', '{REPO / 'Snakefile'}', "
         f"'--configfile={layer}']; main()"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "training.tensorboard (model spade)" in done.stdout + done.stderr
