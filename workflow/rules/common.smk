import csv
import functools

from snakemake.settings.types import DeploymentMethod

# The workflow's input functions and settings. They need Snakemake's `config` and `checkpoints`,
# and Snakemake's linter wants functions apart from rules, so they are here; what they decide is in
# the stages' modules: where files live (pipeline.layout), how a job is launched and which GPUs it
# asks for (pipeline.launch), what a setting means (pipeline.config).
PARSING = config["parsing"]
PARSER = PARSING["weights"] or PARSER_WEIGHTS
METRICS = config["metrics"]
# CelebAMask-HQ brings its own label maps (its masks); every other source is parsed.
LABELS_FROM_MASKS = DataConfig.from_dict(config["data"]).labels_from_masks


def split_sizes():
    """(all images, test images) of the split, known once the split checkpoint has run."""
    path = Path(checkpoints.split.get().output[0])
    return _count_split(path, path.stat().st_mtime_ns)


@functools.cache
def _count_split(path, mtime_ns):
    # Input functions run once per job: read the 70,000-line split once per version of it.
    with open(path, newline="") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    return len(splits), splits.count("test")


def parse_shard_manifests(wildcards):
    """One manifest per shard of the split."""
    return [RESULTS.shard_manifest(shard) for shard in range(shard_count(split_sizes()[0], PARSING["shard_size"]))]


def resegment_shards(wildcards):
    """A row's re-segmentations, one folder per shard of its test images."""
    return row_resegment_shards(wildcards.row)


def row_resegment_shards(row):
    shards = range(shard_count(split_sizes()[1], PARSING["shard_size"]))
    return [RESULTS.resegment(row, shard) for shard in shards]


def parse_truth_shards(wildcards):
    """The second truth of a model's row where the label maps are CelebAMask-HQ's masks: the
    parser's label maps of the real test photos (the real row's re-segmentations)."""
    if not LABELS_FROM_MASKS or wildcards.row == REAL_ROW:
        return []
    return row_resegment_shards(REAL_ROW)


# The compared models' runs (each model's replicates, `spade`, `spade#1`, ...): each is trained,
# synthesised, re-segmented and evaluated by jobs of its own, so that a cluster runs them side by
# side. Then the real images' row.
RUNS = [run for model in config["compare"] for run in replicate_names(config, model)]
# Optional packages a setting asks for, before any job runs; with --use-conda the rule's env has them.
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    for run in RUNS:
        ModelConfig.from_config(config, run).check_packages()
TABLE_ROWS = [*RUNS, REAL_ROW]
MODEL_PATTERN = "|".join(map(re.escape, RUNS))
COMPARED_PATTERN = "|".join(map(re.escape, config["compare"]))
ROW_PATTERN = "|".join(map(re.escape, TABLE_ROWS))


def row_resolution(row):
    """Working resolution of a table row: the model's, or the shared one for the real row."""
    if row == REAL_ROW:
        return config["training"]["resolution"]
    return ModelConfig.from_config(config, row).training.resolution


def training_run_folder(run):
    """The folder of a run's checkpoints, samples and running log (results/models/{run}/runs/<key>)."""
    return str(RESULTS.model(run).run(ModelConfig.from_config(config, run).run_key()).folder)


def model_training(wildcards):
    return ModelConfig.from_config(config, wildcards.model).training
