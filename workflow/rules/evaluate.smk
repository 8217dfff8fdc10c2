rule synthesize:
    """One face per test label map at the model's working resolution, seeded per image."""
    input:
        weights=RESULTS.model("{model}").generator,
        manifests=parse_shard_manifests,
    output:
        directory(RESULTS.synth("{model}")),
    wildcard_constraints:
        model=MODEL_PATTERN,
    params:
        device=METRICS["device"],
        vae_z=METRICS["vae_z"],
    log:
        "results/logs/synthesize/{model}.log",
    benchmark:
        "results/benchmarks/synthesize/{model}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=launch.gpu_request(METRICS["device"]),
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
        test=directory(RESULTS.real("{resolution}", "test")),
        truth=directory(RESULTS.real("{resolution}", "truth")),
        train=directory(RESULTS.real("{resolution}", "train")),
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
    """Inception statistics of the FID reference set (real test or train images), computed once
    per resolution."""
    input:
        RESULTS.real("{resolution}", "{reference}"),
    output:
        RESULTS.real_stats("{resolution}", "{reference}"),
    wildcard_constraints:
        reference="test|train",
    params:
        inception=section_json(config, "metrics", INCEPTION_KEYS),
    log:
        "results/logs/evaluate/real_stats_{resolution}_{reference}.log",
    benchmark:
        "results/benchmarks/evaluate/real_stats_{resolution}_{reference}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=launch.gpu_request(METRICS["device"]),
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.evaluate stats --images {input} --out {output} --metrics-json {params.inception:q} > {log} 2>&1"


rule resegment:
    """One shard of the row's images parsed by the same BiSeNet as the originals, label maps at
    the row's working resolution."""
    input:
        images=lambda wildcards: RESULTS.row_images(wildcards.row, row_resolution(wildcards.row)),
        weights=PARSER,
    output:
        directory(RESULTS.resegment("{row}", "{shard}")),
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
        gpu=launch.gpu_request(PARSING["device"]),
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.parse images --parsing-json {params.parsing:q} --weights {input.weights:q}"
        " --images {input.images} --shard {wildcards.shard} --out-dir {output} --label-size {params.label_size}"
        " --threads {threads}"
        " > {log} 2>&1"


rule evaluate:
    """Accuracy, mIoU with bootstrap intervals, per-class IoU, FID and KID of one model's run
    (a replicate) or of the real images, and the per-image confusion matrices the table resamples."""
    input:
        # All but the re-segmentation shards are known before the split checkpoint has run, so
        # that while it is pending only those wait (e.g. for a dry run's shell commands).
        truth=lambda wildcards: RESULTS.real(row_resolution(wildcards.row), "truth"),
        images=lambda wildcards: RESULTS.fid_images(
            wildcards.row, row_resolution(wildcards.row), METRICS["fid_reference"]
        ),
        real_stats=lambda wildcards: RESULTS.real_stats(row_resolution(wildcards.row), METRICS["fid_reference"]),
        trained=lambda wildcards: RESULTS.trained(wildcards.row),
        predictions=resegment_shards,
        parse_truth=parse_truth_shards,
    output:
        metrics=RESULTS.metrics("{row}"),
        confusions=RESULTS.confusions("{row}"),
    wildcard_constraints:
        row=ROW_PATTERN,
    params:
        metrics=section_json(config, "metrics"),
        # How the row was made: a model's generator.pt and training log, or the real row's resolution.
        training=lambda wildcards: (
            "--weights {} --train-log {}".format(*RESULTS.trained(wildcards.row))
            if wildcards.row != REAL_ROW
            else f"--resolution {row_resolution(wildcards.row)}"
        ),
        # With CelebAMask-HQ's masks as truth, also the score against the real photo's parse.
        parse_truth=lambda wildcards, input: (
            "--parse-truth " + " ".join(input.parse_truth) if input.parse_truth else ""
        ),
    log:
        "results/logs/evaluate/{row}.log",
    benchmark:
        "results/benchmarks/evaluate/{row}.tsv"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=launch.gpu_request(METRICS["device"]),
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.evaluate row --name {wildcards.row} --truth {input.truth}"
        " --predictions {input.predictions} --images {input.images} --real-stats {input.real_stats}"
        " {params.training} {params.parse_truth} --metrics-json {params.metrics:q} --out {output.metrics}"
        " --confusions {output.confusions} > {log} 2>&1"


rule table:
    """The comparison tables and figures: one row per model in `compare` (over its replicates),
    then `real`; the long table of every run; the pairwise differences. The models' training
    figures come with it (not read here), so that the report of a run built for the table has them."""
    input:
        metrics=[RESULTS.metrics(row) for row in TABLE_ROWS],
        confusions=[RESULTS.confusions(row) for row in TABLE_ROWS],
        truth=RESULTS.real(row_resolution(REAL_ROW), "truth"),
        real=RESULTS.real(row_resolution(REAL_ROW), "test"),
        synth=[RESULTS.synth(model) for model in config["compare"]],
        split=RESULTS.split,
        training_figures=[RESULTS.figure(f"training/{model}") for model in config["compare"]],
    params:
        # Hashed for the protocol lines; not an input, so that a dry run before the split plans
        # the table without a user's weights file (the evaluations, the table's inputs, need it).
        parser=PARSER,
        published=json.dumps(
            {model: config["models"][model].get("published", []) for model in config["compare"]}
        ),
        data=section_json(config, "data"),
        parsing_size=PARSING["size"],
        fid_reference=METRICS["fid_reference"],
        fid_dims=METRICS["fid_dims"],
        bootstrap=METRICS["bootstrap"],
    output:
        table=report(RESULTS.table, caption="../report/table.rst", category="Comparison"),
        markdown=RESULTS.table_markdown,
        runs=report(RESULTS.table_runs, caption="../report/table_runs.rst", category="Comparison"),
        pairwise=report(RESULTS.pairwise, caption="../report/pairwise.rst", category="Comparison"),
        spread=report(RESULTS.figure("replicates"), caption="../report/replicates.rst", category="Comparison"),
        per_class=RESULTS.per_class_iou,
        chart=report(RESULTS.figure("per_class_iou"), caption="../report/per_class_iou.rst", category="Comparison"),
        samples=report(RESULTS.figure("samples"), caption="../report/samples.rst", category="Samples"),
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
        "python -m pipeline.table --metrics {input.metrics} --confusions {input.confusions} --table {output.table}"
        " --runs {output.runs} --pairwise {output.pairwise} --spread {output.spread} --per-class {output.per_class}"
        " --chart {output.chart} --samples {output.samples} --truth {input.truth} --real {input.real}"
        " --synth {input.synth} --published-json {params.published:q} --data-json {params.data:q}"
        " --split {input.split} --parser-weights {params.parser:q} --parsing-size {params.parsing_size}"
        " --fid-reference {params.fid_reference} --fid-dims {params.fid_dims} --bootstrap {params.bootstrap} > {log} 2>&1"
