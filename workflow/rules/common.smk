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
