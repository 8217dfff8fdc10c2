"""Crash safety as the README promises it: the smoke workflow SIGKILLed as a whole process group
(Snakemake and its jobs, as a killed login session or the OOM killer leaves it) at seeded random
moments in parsing, training, synthesis and evaluation, recovered each time exactly as the
README's "Stopping and recovering" says (`--unlock` once, then the same command), ends with the
table of an uninterrupted run and no partial file anywhere in results/."""

from __future__ import annotations

import base64
import csv
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from support import (
    SMOKE_COMPARE,
    SMOKE_ITERATIONS,
    fingerprint,
    keep_run,
    kept_run,
    smoke_config,
    snakemake,
    snakemake_command,
    snakemake_env,
)

pytestmark = pytest.mark.crash

# The stages killed in, in workflow order: the rule whose job is running when the kill comes,
# its jobs' benchmark files (how long they took in the uninterrupted run), and the output of
# that job that must then be incomplete (proof that the kill landed in it).
STAGES = [
    ("parsing", "parse_shard", "parse/shard_*.tsv", r"results/labels/shards/\d+\.csv"),
    ("training", "train", "train/*.tsv", r"results/models/\w+/generator\.pt"),
    ("synthesis", "synthesize", "synthesize/*.tsv", r"results/synth/\w+"),
    ("evaluation", "evaluate", "evaluate/spade*.tsv", r"results/metrics/\w+\.json"),
]
# The kill comes at a random fraction, drawn from this seed, of the time the stage's jobs took in
# the uninterrupted run: late enough to be past the imports, early enough to cut the job off.
SEED = 2026
FRACTION = (0.5, 0.9)
# Train time (a sum of measured step times) is the one column that cannot repeat between runs.
TIMED_COLUMNS = {"train_hours"}


# The smoke run's command (docs/testing.md), the same after every stop.
COMMAND = ["results/table.csv", "--cores", "2", "--configfile", "smoke.yaml"]


def job_seconds(workdir: Path, benchmarks: str) -> float:
    """The shortest wall time of a stage's jobs (Snakemake's benchmark files, column s)."""
    times = []
    for path in (workdir / "results" / "benchmarks").glob(benchmarks):
        with open(path, newline="") as f:
            times += [float(row["s"]) for row in csv.DictReader(f, delimiter="\t")]
    assert times, benchmarks
    return min(times)


def kill_during(workdir: Path, rule: str, incomplete: str, delay: float) -> None:
    """Run the workflow until a job of `rule` has started (for training: until it has written a
    checkpoint, so that the kill interrupts steps, not imports), wait `delay` s, then SIGKILL the
    whole process group, and check that a job of `rule` was cut off."""
    process = subprocess.Popen(snakemake_command(workdir, *COMMAND), cwd=workdir, env=snakemake_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    started = threading.Event()
    lines: list[str] = []

    def watch() -> None:
        for line in process.stderr:
            lines.append(line)
            if re.match(rf"(local)?rule {rule}:", line.strip()):
                started.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + 600
    while not started.is_set() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    if rule == "train":
        while not list(workdir.glob("results/models/*/runs/*/checkpoints/step_*.pt")) and process.poll() is None:
            time.sleep(0.05)
    time.sleep(delay)
    assert process.poll() is None, f"the workflow ended before the kill in {rule}:\n{''.join(lines)[-3000:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    cut = incomplete_outputs(workdir)
    assert any(re.fullmatch(incomplete, path) for path in cut), (rule, cut, "".join(lines)[-3000:])


def incomplete_outputs(workdir: Path) -> list[str]:
    """The outputs Snakemake had marked as being made when it died (.snakemake/incomplete holds
    one file per output, named by its path in URL-safe base64)."""
    markers = workdir / ".snakemake" / "incomplete"
    names = [path.name for path in markers.iterdir() if path.is_file()] if markers.exists() else []
    return [base64.urlsafe_b64decode(name).decode() for name in names if name != "migration_underway"]


def table(workdir: Path) -> list[dict]:
    with open(workdir / "results" / "table.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMED_COLUMNS} for row in csv.DictReader(f)]


def partial_files(results: Path) -> list[str]:
    """Temporary names (pipeline.files.atomic_path's, downloads' .part) and images that do not
    decode to the end."""
    found = [str(p) for p in results.rglob("*") if re.search(r"\.tmp-\d+$|\.part$", p.name)]
    for png in results.rglob("*.png"):
        try:
            with Image.open(png) as image:
                image.load()
        except OSError as err:
            found.append(f"{png}: {err}")
    return found


def uninterrupted_run(tmp_path: Path) -> Path:
    """The smoke run's table and job times: the workflow test's, where it kept them for this
    checkout, code and machine; else made here."""
    made_by = Path(__file__).with_name("test_workflow.py")  # the smoke test, which keeps its run
    key = fingerprint("smoke", SMOKE_COMPARE, SMOKE_ITERATIONS, made_by=made_by)
    if kept_run("smoke", key).exists():
        return kept_run("smoke", key)
    straight = tmp_path / "straight"
    straight.mkdir()
    smoke_config(straight, compare=SMOKE_COMPARE, iterations=SMOKE_ITERATIONS)
    result = snakemake(*COMMAND, cwd=straight, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return keep_run("smoke", key, straight, ["results/table.csv", "results/benchmarks"])


def test_sigkilled_anywhere_and_recovered_as_the_readme_says_gives_the_uninterrupted_table(shared, tmp_path):
    straight, killed = uninterrupted_run(tmp_path), tmp_path / "killed"
    killed.mkdir()
    smoke_config(killed, compare=SMOKE_COMPARE, iterations=SMOKE_ITERATIONS)

    rng = random.Random(SEED)
    for stage, rule, benchmarks, incomplete in STAGES:
        # training is killed once it has checkpointed: within the first half of what is left
        fraction = rng.uniform(0.1, 0.5) if rule == "train" else rng.uniform(*FRACTION)
        kill_during(killed, rule, incomplete, delay=fraction * job_seconds(straight, benchmarks))
        # The README: after a SIGKILL the same command is refused (a stale lock), so unlock once,
        # then run the same command.
        refused = snakemake(*COMMAND, cwd=killed)
        assert refused.returncode != 0 and "--unlock" in refused.stderr, (stage, refused.stderr[-2000:])
        unlocked = snakemake(*COMMAND, "--unlock", cwd=killed)
        assert unlocked.returncode == 0, (stage, unlocked.stderr[-2000:])
    final = snakemake(*COMMAND, cwd=killed, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]

    assert table(killed) == table(straight)
    assert [row["model"] for row in table(killed)] == [*SMOKE_COMPARE, "real"]
    assert partial_files(killed / "results") == []
    # the training that was cut off went on from its checkpoint
    train_logs = "".join((killed / "results" / "logs" / "train" / f"{model}.log").read_text() for model in SMOKE_COMPARE)
    assert "resumed from step" in train_logs
