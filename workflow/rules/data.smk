checkpoint split:
    """Find or download the face images, verify them, and split them into train/test.
    A checkpoint: how many parsing shards follow depends on how many images it finds."""
    output:
        RESULTS.split,
    params:
        data=section_json(config, "data"),
    log:
        "results/logs/data/split.log",
    benchmark:
        "results/benchmarks/data/split.tsv"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=720,
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m pipeline.data --data-json {params.data:q} --out {output} --threads {threads} > {log} 2>&1"
