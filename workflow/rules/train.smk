rule train:
    """Train one run of a model (replicate 0 is `spade`, replicate k `spade#k`) on the train
    split; a rerun resumes from its newest checkpoint (results/models/{model}/runs/<settings
    key>/checkpoints), never from step 0. How it is launched (one process, torchrun, srun on
    several nodes) is pipeline.launch's."""
    input:
        manifests=parse_shard_manifests,
    output:
        generator=RESULTS.model("{model}").generator,
        log_csv=RESULTS.model("{model}").train_log,
    wildcard_constraints:
        model=MODEL_PATTERN,
    params:
        model=lambda wildcards: ModelConfig.from_config(config, wildcards.model).to_json(),
        out_dir=lambda wildcards, output: Path(output.generator).parent,
        # Not passed on: a new format of the networks' weights makes Snakemake retrain.
        network_format=NETWORK_FORMAT,
        launcher=lambda wildcards: launch.launcher(model_training(wildcards)),
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
        gpu=lambda wildcards: launch.one_node_gpus(model_training(wildcards)),
        gres=lambda wildcards: launch.gres_per_node(model_training(wildcards)),
        nodes=lambda wildcards: model_training(wildcards).nodes,
        tasks=lambda wildcards: launch.multi_node(model_training(wildcards), model_training(wildcards).nodes),
        tasks_per_gpu=lambda wildcards: launch.multi_node(model_training(wildcards), 0),
        mpi=lambda wildcards: launch.multi_node(model_training(wildcards), "srun"),
    conda:
        "../../envs/torch.yaml"
    shell:
        "{params.launcher} -m pipeline.train --model-json {params.model:q} --manifests {input.manifests}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"


rule train_all:
    """Every compared model trained, each of its replicates."""
    input:
        [RESULTS.model(run).generator for run in RUNS],


rule training_figure:
    """A model's training curves, its runs (replicates) overlaid, and their last sample grids
    (read from each run's folder, which training leaves beside train_log.csv)."""
    input:
        logs=lambda wildcards: [RESULTS.model(run).train_log for run in replicate_names(config, wildcards.model)],
    output:
        report(
            RESULTS.figure("training/{model}"),
            caption="../report/training.rst",
            category="Training",
            labels={"model": "{model}"},
        ),
    wildcard_constraints:
        model=COMPARED_PATTERN,
    params:
        runs=lambda wildcards: [training_run_folder(run) for run in replicate_names(config, wildcards.model)],
        names=lambda wildcards: replicate_names(config, wildcards.model),
    log:
        "results/logs/training_figure/{model}.log",
    benchmark:
        "results/benchmarks/training_figure/{model}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m pipeline.training_figure --logs {input.logs} --runs {params.runs:q} --names {params.names:q}"
        " --title {wildcards.model:q} --out {output} > {log} 2>&1"
