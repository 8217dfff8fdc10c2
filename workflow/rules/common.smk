# Settings and input functions shared by the rule files.
PARSING = config["parsing"]
# Where the pretrained weights are downloaded when parsing.weights names no file of its own.
DOWNLOADED_WEIGHTS = "resources/weights/parsing_bisenet.pth"
PARSER_WEIGHTS = PARSING["weights"] or DOWNLOADED_WEIGHTS


def parse_shard_manifests(wildcards):
    """One manifest per shard of the split, known once the split checkpoint has run."""
    with open(checkpoints.split.get().output[0]) as f:
        n_images = sum(1 for _ in f) - 1  # minus the header
    shards = range(shard_count(n_images, PARSING["shard_size"]))
    return expand("results/labels/shards/{shard}.csv", shard=shards)

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
    row, resolution = wildcards.row, row_resolution(wildcards.row)
    inputs = {
        "truth": f"results/real/{resolution}/truth",
        "predictions": f"results/resegment/{row}",
        # FID of the real row compares real train with real test images, in equal numbers.
        "images": row_images(row, "train"),
        "real_stats": f"results/real/{resolution}/test_stats.npz",
    }
    if row != REAL_ROW:
        inputs["weights"] = f"results/models/{row}/generator.pt"
        inputs["train_log"] = f"results/models/{row}/train_log.csv"
    return inputs
