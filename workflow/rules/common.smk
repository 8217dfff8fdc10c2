import csv
import functools

# Settings and input functions shared by the rule files.
PARSING = config["parsing"]
# Where the pretrained weights are downloaded when parsing.weights names no file of its own.
DOWNLOADED_WEIGHTS = "resources/weights/parsing_bisenet.pth"
PARSER_WEIGHTS = PARSING["weights"] or DOWNLOADED_WEIGHTS


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
    shards = range(shard_count(split_sizes()[0], PARSING["shard_size"]))
    return expand("results/labels/shards/{shard}.csv", shard=shards)


def resegment_shards(row):
    """A row's re-segmentations, one folder per shard of its test images."""
    shards = range(shard_count(split_sizes()[1], PARSING["shard_size"]))
    return expand("results/resegment/{row}/{shard}", row=row, shard=shards)


# Table rows: the compared models, then the real images.
TABLE_ROWS = [*config["compare"], REAL_ROW]
MODEL_PATTERN = "|".join(config["compare"])
ROW_PATTERN = "|".join(TABLE_ROWS)


def row_resolution(row):
    """Working resolution of a table row: the model's, or the shared one for the real row."""
    if row == REAL_ROW:
        return config["training"]["resolution"]
    return ModelConfig.from_config(config, row).training.resolution


def row_images(row, part):
    """A row's images: a model's syntheses, or the real images (part: test or train)."""
    if row == REAL_ROW:
        return f"results/real/{row_resolution(row)}/{part}"
    return f"results/synth/{row}"


def evaluate_inputs(wildcards):
    """The inputs of a row's evaluation that are known before the split exists. (Its
    re-segmentation shards are not: they are a separate input, so that while the split
    checkpoint is pending only that input waits for it and the named ones stay, e.g. for a dry
    run's shell commands.)"""
    row, resolution = wildcards.row, row_resolution(wildcards.row)
    inputs = {
        "truth": f"results/real/{resolution}/truth",
        # FID of the real row compares real train with real test images, in equal numbers.
        "images": row_images(row, "train"),
        "real_stats": f"results/real/{resolution}/test_stats.npz",
    }
    if row != REAL_ROW:
        inputs.update(trained_model(row))
    return inputs


def model_training(wildcards):
    return ModelConfig.from_config(config, wildcards.model).training


def train_launcher(wildcards):
    """What starts pipeline.train: python for one process; torchrun with `gpus` processes on one
    node; on several nodes (a SLURM job, as an `mpi` job so that its shell runs once in the
    allocation), srun starts one torchrun per node, and they meet at the job's first node."""
    training = model_training(wildcards)
    if training.world_size == 1:
        return "python"
    # On SIGTERM torchrun forwards it and SIGKILLs the workers after --shutdown-timeout (30 s by
    # default): rank 0 needs longer to finish its step and save the checkpoint (the SLURM
    # profile's --signal=TERM@300 leaves it 5 minutes).
    if training.nodes == 1:
        return f"torchrun --standalone --nproc-per-node {training.gpus} --shutdown-timeout 240"
    return (
        f"srun --ntasks-per-node=1 torchrun --nnodes {training.nodes} --nproc-per-node {training.gpus}"
        " --shutdown-timeout 240"
        " --rdzv-backend c10d --rdzv-id $SLURM_JOB_ID"
        " --rdzv-endpoint $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1):29400"
    )


def train_gpus(wildcards, nodes):
    """GPUs of a train job on one node (several nodes ask per node, through gres); none on the CPU."""
    training = model_training(wildcards)
    if training.device == "cpu" or (training.nodes > 1) != nodes:
        return None
    return f"gpu:{training.gpus}" if nodes else training.gpus


def multi_node(wildcards, value):
    """`value` for a train job on several nodes, else nothing (the resource is left out)."""
    return value if model_training(wildcards).nodes > 1 else None


def trained_model(model):
    return {"weights": f"results/models/{model}/generator.pt", "train_log": f"results/models/{model}/train_log.csv"}


def row_training_args(row):
    """What evaluate needs to know of how a row was made (not input files: the paths are known
    before the split checkpoint has run)."""
    if row == REAL_ROW:
        return f"--resolution {row_resolution(row)}"
    files = trained_model(row)
    return f"--weights {files['weights']} --train-log {files['train_log']}"
