rule synthesize:
    """One face per test label map at the model's working resolution, seeded per image."""
    input:
        weights="results/models/{model}/generator.pt",
        manifests=parse_shard_manifests,
    output:
        directory("results/synth/{model}"),
    wildcard_constraints:
        model=MODEL_PATTERN,
    params:
        device=config["metrics"]["device"],
        vae_z=config["metrics"]["vae_z"],
    log:
        "results/logs/synthesize/{model}.log",
    benchmark:
        "results/benchmarks/synthesize/{model}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0 if config["metrics"]["device"] == "cpu" else 1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.synthesize --weights {input.weights} --manifests {input.manifests}"
        " --out-dir {output} --device {params.device} --vae-z {params.vae_z} > {log} 2>&1"


rule real_images:
    """Real test images and their ground-truth label maps at a working resolution (resized as
    for training), and as many real train images for the real row's FID."""
    input:
        manifests=parse_shard_manifests,
    output:
        test=directory("results/real/{resolution}/test"),
        truth=directory("results/real/{resolution}/truth"),
        train=directory("results/real/{resolution}/train"),
    wildcard_constraints:
        resolution=r"\d+",
    params:
        out_dir=lambda wildcards, output: Path(output.test).parent,
    log:
        "results/logs/evaluate/real_{resolution}.log",
    benchmark:
        "results/benchmarks/evaluate/real_{resolution}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.evaluate real --manifests {input.manifests} --resolution {wildcards.resolution}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule real_stats:
    """Inception statistics of the real test images, computed once per resolution."""
    input:
        "results/real/{resolution}/test",
    output:
        "results/real/{resolution}/test_stats.npz",
    params:
        metrics=section_json(config, "metrics"),
    log:
        "results/logs/evaluate/real_stats_{resolution}.log",
    benchmark:
        "results/benchmarks/evaluate/real_stats_{resolution}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0 if config["metrics"]["device"] == "cpu" else 1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.evaluate stats --images {input} --out {output} --metrics-json {params.metrics:q} > {log} 2>&1"


rule resegment:
    """One shard of the row's images parsed by the same BiSeNet as the originals, label maps at
    the row's working resolution."""
    input:
        images=lambda wildcards: row_images(wildcards.row, "test"),
        weights=PARSER_WEIGHTS,
    output:
        directory("results/resegment/{row}/{shard}"),
    wildcard_constraints:
        row=ROW_PATTERN,
        shard=r"\d+",
    params:
        parsing=section_json(config, "parsing"),
        label_size=lambda wildcards: row_resolution(wildcards.row),
    log:
        "results/logs/resegment/{row}/{shard}.log",
    benchmark:
        "results/benchmarks/resegment/{row}/{shard}.tsv"
    threads: PARSING["workers"] + 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0 if PARSING["device"] == "cpu" else 1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.parse images --parsing-json {params.parsing:q} --weights {input.weights:q}"
        " --images {input.images} --shard {wildcards.shard} --out-dir {output} --label-size {params.label_size}"
        " --threads {threads}"
        " > {log} 2>&1"


rule evaluate:
    """Accuracy, mIoU with bootstrap intervals, per-class IoU, FID and KID of one table row."""
    input:
        unpack(evaluate_inputs),
        predictions=lambda wildcards: resegment_shards(wildcards.row),
    output:
        "results/metrics/{row}.json",
    wildcard_constraints:
        row=ROW_PATTERN,
    params:
        metrics=section_json(config, "metrics"),
        training=lambda wildcards: row_training_args(wildcards.row),
    log:
        "results/logs/evaluate/{row}.log",
    benchmark:
        "results/benchmarks/evaluate/{row}.tsv"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=0 if config["metrics"]["device"] == "cpu" else 1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.evaluate row --name {wildcards.row} --truth {input.truth}"
        " --predictions {input.predictions} --images {input.images} --real-stats {input.real_stats}"
        " {params.training} --metrics-json {params.metrics:q} --out {output} > {log} 2>&1"


rule table:
    """The comparison tables and figures: one row per model in `compare`, then `real`."""
    input:
        metrics=expand("results/metrics/{row}.json", row=TABLE_ROWS),
        truth=f"results/real/{row_resolution(REAL_ROW)}/truth",
        real=f"results/real/{row_resolution(REAL_ROW)}/test",
        synth=expand("results/synth/{model}", model=config["compare"]),
    params:
        published=json.dumps(
            {model: config["models"][model].get("published", []) for model in config["compare"]}
        ),
    output:
        table=report("results/table.csv", caption="../report/table.rst", category="Comparison"),
        markdown="results/table.md",
        per_class="results/per_class_iou.csv",
        chart=report("results/figures/per_class_iou.png", caption="../report/per_class_iou.rst", category="Comparison"),
        samples=report("results/figures/samples.png", caption="../report/samples.rst", category="Samples"),
    log:
        "results/logs/evaluate/table.log",
    benchmark:
        "results/benchmarks/evaluate/table.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.table --metrics {input.metrics} --table {output.table} --per-class {output.per_class}"
        " --chart {output.chart} --samples {output.samples} --truth {input.truth} --real {input.real}"
        " --synth {input.synth} --published-json {params.published:q} > {log} 2>&1"
