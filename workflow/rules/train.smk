rule train:
    """Train one model on the train split; a rerun resumes from its newest checkpoint
    (results/models/{model}/runs/<settings key>/checkpoints), never from step 0."""
    input:
        manifests=parse_shard_manifests,
    output:
        generator="results/models/{model}/generator.pt",
        log_csv="results/models/{model}/train_log.csv",
    wildcard_constraints:
        model=MODEL_PATTERN,
    params:
        model=lambda wildcards: ModelConfig.from_config(config, wildcards.model).to_json(),
        out_dir=lambda wildcards, output: Path(output.generator).parent,
        # Not passed on: a new format of the networks' weights makes Snakemake retrain.
        network_format=NETWORK_FORMAT,
        launcher=train_launcher,
    log:
        "results/logs/train/{model}.log",
    benchmark:
        "results/benchmarks/train/{model}.tsv"
    threads: 4
    resources:
        mem_mb=32000,
        runtime=2880,
        # One node: `gpu` GPUs (locally, --resources gpu=N keeps jobs from sharing them). Several
        # nodes (SLURM): gres per node, one task (a torchrun) per node, run as an mpi job.
        gpu=lambda wildcards: train_gpus(wildcards, nodes=False),
        gres=lambda wildcards: train_gpus(wildcards, nodes=True),
        nodes=lambda wildcards: model_training(wildcards).nodes,
        tasks=lambda wildcards: multi_node(wildcards, model_training(wildcards).nodes),
        tasks_per_gpu=lambda wildcards: multi_node(wildcards, 0),
        mpi=lambda wildcards: multi_node(wildcards, "srun"),
    conda:
        "../../envs/torch.yaml"
    shell:
        "{params.launcher} -m pipeline.train --model-json {params.model:q} --manifests {input.manifests}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"


rule train_all:
    """Every compared model trained."""
    input:
        expand("results/models/{model}/generator.pt", model=config["compare"]),
