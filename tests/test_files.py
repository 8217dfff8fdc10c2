"""Outputs appear whole or not at all, even when the writer is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from support import REPO

from pipeline.files import atomic_path


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stage failed")
    assert list(target.parent.iterdir()) == []


def test_the_next_write_removes_what_a_sigkilled_writer_left(tmp_path):
    """SIGKILL runs no cleanup: the killed process's temporary stays until the path is written
    again (the rerun of its job), which removes it, and only it."""
    target = tmp_path / "labels" / "00001.png"
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pipeline.files import atomic_path\n"
         "with atomic_path(sys.argv[1]) as tmp:\n"
         "    tmp.write_bytes(b'half a png'); print('writing', flush=True); time.sleep(60)",
         str(target)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    dead = target.with_name(f".00001.png.tmp-{writer.pid}")
    assert [p.name for p in target.parent.iterdir()] == [dead.name]
    # a writer still running keeps its file (a job a SIGKILLed Snakemake left behind), and
    # another path's leftover is not this write's business
    live, other = target.with_name(f".00001.png.tmp-{os.getppid()}"), target.with_name(f".00002.png.tmp-{writer.pid}")
    live.write_bytes(b"")
    other.write_bytes(b"")

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([live.name, other.name, "00001.png"])
    assert target.read_bytes() == b"whole"


def test_a_checkpoint_cut_off_at_a_step_never_saved_again_is_removed_by_the_next_save(tmp_path):
    """A SIGTERM stop saves at an off-interval step; SIGKILLed while doing so, its temporary
    would never be overwritten: the next checkpoint save removes it."""
    from pipeline.train import Checkpoints

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
    (folder / f".step_00000123.pt.tmp-{dead_pid}").write_bytes(b"half")
    Checkpoints(folder, keep=1).save({"step": 200}, 200)
    assert [p.name for p in folder.iterdir()] == ["step_00000200.pt"]
