import csv
import functools

# Input functions and settings that the workflow's steps share: the shards of the split, the
# table's rows, and the GPU a job asks for. Each step's own logic is in its stage's modules (e.g.
# how training is launched, pipeline.launch; where files live, pipeline.layout).
PARSING = config["parsing"]
PARSER = PARSING["weights"] or PARSER_WEIGHTS
METRICS = config["metrics"]


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
    shards = range(shard_count(split_sizes()[1], PARSING["shard_size"]))
    return [RESULTS.resegment(wildcards.row, shard) for shard in shards]


# Table rows: the compared models, then the real images.
TABLE_ROWS = [*config["compare"], REAL_ROW]
MODEL_PATTERN = "|".join(config["compare"])
ROW_PATTERN = "|".join(TABLE_ROWS)


def row_resolution(row):
    """Working resolution of a table row: the model's, or the shared one for the real row."""
    if row == REAL_ROW:
        return config["training"]["resolution"]
    return ModelConfig.from_config(config, row).training.resolution


def model_training(wildcards):
    return ModelConfig.from_config(config, wildcards.model).training


def gpu(device):
    """The `gpu` resource of a job on `device` (a config's auto, cpu or cuda): one GPU unless
    it runs on the CPU, so that GPU jobs never overlap on a one-GPU workstation."""
    return 0 if device == "cpu" else 1
