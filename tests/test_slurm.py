"""The cluster path on a real scheduler: the smoke workflow submitted through
workflow/profiles/slurm to a single-node SLURM started here (tests/local_slurm.py)."""

from __future__ import annotations

import csv
import importlib.util
import re

import pytest
import yaml
from local_slurm import ACCOUNT, NODE_CPUS, PARTITION, LocalSlurm, node_resources, unavailable_reason
from support import REPO, rule_blocks, smoke_config, snakemake

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"no local SLURM: {unavailable_reason()}"),
    pytest.mark.skipif(
        importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
        reason="snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')",
    ),
]


def rule_threads() -> dict[str, int]:
    """The threads each rule declares as a number (the others take config values)."""
    return {rule: int(m.group(1)) for rule, block in rule_blocks().items() if (m := re.search(r"threads: (\d+)$", block, re.M))}


def test_smoke_workflow_through_the_slurm_profile(shared, tmp_path):
    # The shipped profile, with this cluster's partition and account; the node has 2 CPUs, no
    # GPU and 23 GB, so every job gets at most 2 CPUs, 1 GB and no GPU.
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["set-resources"]["parse_shard"]["gpu"] == 1
    assert "gpu" not in profile["set-resources"]["train"]  # the rule asks per model (training.gpus)
    profile["default-resources"].update(slurm_partition=PARTITION, slurm_account=ACCOUNT)
    rules = sorted(rule_blocks())
    shipped = profile["set-resources"]
    profile["set-resources"] = {
        rule: {**shipped.get(rule, {}), "mem_mb": 1000, "runtime": 30, **({"gpu": 0} if rule in shipped else {})}
        for rule in rules
    }
    # The documented cap for nodes smaller than a rule asks for (the profile's max-threads, set to
    # the node's CPUs): some rules want more threads than this node has, and without the cap their
    # jobs would stay pending forever.
    cpus = min(int(node_resources()["CPUs"]), NODE_CPUS)
    assert max(rule_threads().values()) > cpus, rule_threads()
    assert "max-threads" in profile
    profile["max-threads"] = cpus
    profile.update({"jobs": 2, "slurm-init-seconds-before-status-checks": 5, "seconds-between-status-checks": 5})
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))
    # The model trains on 2 processes (torchrun, gloo) in its SLURM job, as on a 2-GPU node.
    smoke = smoke_config(tmp_path, compare=["spade"], models={"spade": {"training": {"gpus": 2}}})

    with LocalSlurm(tmp_path / "slurm") as cluster:
        result = snakemake(
            "results/table.csv", "--workflow-profile", "profile", "--configfile", "smoke.yaml",
            cwd=tmp_path, timeout=900, env=cluster.env,
        )
        jobs = cluster.accounted_jobs()
        controller_log = cluster.controller_log()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using workflow specific profile profile" in result.stderr

    with open(tmp_path / "results/table.csv", newline="") as f:
        assert [row["model"] for row in csv.DictReader(f)] == [*smoke["compare"], "real"]
    train_log = (tmp_path / "results/logs/train/spade.log").read_text()
    assert "2 process(es), global batch 4, 2 per process" in train_log
    # Every job went through the scheduler and finished there.
    submitted = {re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", comment).group(1) for comment, _ in jobs}
    assert {"split", "parse_shard", "train", "synthesize", "resegment", "evaluate", "table"} <= submitted, jobs
    assert all(state == "COMPLETED" for _, state in jobs), jobs
    # started by the main scheduler or by backfill (a job queued behind a whole-node one)
    started = re.findall(r"sched: Allocate JobId=\d+|sched/backfill: _start_job: Started JobId=\d+", controller_log)
    assert len(started) == len(jobs), started
    # the capped rules got the node's CPUs, no job more
    allocated = [int(n) for n in re.findall(r"sched: Allocate JobId=\d+ NodeList=\S+ #CPUs=(\d+)", controller_log)]
    assert max(allocated) == cpus, allocated
