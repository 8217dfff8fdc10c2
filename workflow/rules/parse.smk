rule parser_weights:
    """Download facexlib's pretrained BiSeNet once; accepted only with its size and sha256."""
    output:
        PARSER_WEIGHTS,
    params:
        url=PARSING["weights_url"],
    log:
        "results/logs/parse/weights.log",
    benchmark:
        "results/benchmarks/parse/weights.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.parse weights --url {params.url:q} --out {output:q} > {log} 2>&1"


rule demo_parser:
    """The offline demo's face parser (workflow/demo/config.yaml names it as parsing.weights):
    facexlib's BiSeNet trained on procedural faces, about 3 minutes on 2 CPU cores."""
    output:
        DEMO_PARSER_WEIGHTS,
    log:
        "results/logs/parse/demo_parser.log",
    benchmark:
        "results/benchmarks/parse/demo_parser.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.demo parser --out {output} --threads {threads} > {log} 2>&1"


if LABELS_FROM_MASKS:

    rule mask_shard:
        """Merge one shard of the split's CelebAMask-HQ part masks into results/labels/{image_id}.png
        (the input label maps; the parser only re-segments); the manifest lists them."""
        input:
            RESULTS.split,
        output:
            RESULTS.shard_manifest("{shard}"),
        wildcard_constraints:
            shard=r"\d+",
        params:
            shard_size=PARSING["shard_size"],
            labels_dir=lambda wildcards, output: Path(output[0]).parent.parent,
        log:
            "results/logs/data/masks_{shard}.log",
        benchmark:
            "results/benchmarks/data/masks_{shard}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m pipeline.data.masks --split {input} --shard {wildcards.shard} --shard-size {params.shard_size}"
            " --labels-dir {params.labels_dir} --manifest {output} > {log} 2>&1"

else:

    rule parse_shard:
        """Parse one shard of the split into results/labels/{image_id}.png; the manifest lists them.
        Label maps this parser already made are skipped, so a rerun or a requeued job resumes."""
        input:
            split=RESULTS.split,
            weights=PARSER,
        output:
            RESULTS.shard_manifest("{shard}"),
        wildcard_constraints:
            shard=r"\d+",
        params:
            parsing=section_json(config, "parsing"),
            labels_dir=lambda wildcards, output: Path(output[0]).parent.parent,
        log:
            "results/logs/parse/shard_{shard}.log",
        benchmark:
            "results/benchmarks/parse/shard_{shard}.tsv"
        threads: PARSING["workers"] + 1
        resources:
            mem_mb=8000,
            runtime=120,
            gpu=launch.gpu_request(PARSING["device"]),
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m pipeline.parse shard --parsing-json {params.parsing:q} --weights {input.weights:q}"
            " --split {input.split} --shard {wildcards.shard} --labels-dir {params.labels_dir}"
            " --manifest {output} --threads {threads} > {log} 2>&1"


rule parse_preview:
    """A few faces of the first shard beside their label maps, with the class legend."""
    input:
        RESULTS.shard_manifest(0),
    output:
        RESULTS.parse_preview,
    log:
        "results/logs/parse/preview.log",
    benchmark:
        "results/benchmarks/parse/preview.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.parse preview --manifest {input} --out {output} > {log} 2>&1"


rule parse_all:
    """Every image of the split parsed, and the preview."""
    input:
        parse_shard_manifests,
        RESULTS.parse_preview,
