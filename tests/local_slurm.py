"""A single-node SLURM cluster on localhost from Debian's packages, for the `slurm` test only.

Everything it writes (configuration, state, logs) lives in one work directory, except the
accounting database, which goes in a scratch directory of its own that user mysql can reach (a
pytest tmp_path is private to root), and a link to its configuration at /etc/slurm/slurm.conf,
made only where none exists and removed afterwards; munged uses the system's key and socket, as
every SLURM client expects. Daemons
it starts are stopped again, in reverse order; a munged that was already running is left alone.
Accounting goes through slurmdbd on a private MariaDB because the executor plugin polls `sacct`.

Root is needed: munged runs as user munge, and slurmd must be able to run jobs as anyone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "sinfo")
PARTITION = "local"
# Where SLURM's commands look without SLURM_CONF. Snakemake's job-step executor drops every SLURM_*
# variable before calling srun inside a job, so the test cluster's configuration must be found here.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
ACCOUNT = "root"  # slurmctld registers the cluster with a root account


def unavailable_reason() -> str | None:
    """Why a local cluster cannot start here, or None when it can."""
    if os.geteuid() != 0:
        return "starting munged, slurmdbd, slurmctld and slurmd needs root"
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"Debian packages slurm-wlm, slurmdbd, munge and mariadb-server are not installed (no {', '.join(missing)})"
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        return f"{SYSTEM_CONF} exists: this host belongs to a SLURM cluster, which a test must not touch"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"local SLURM: {what} not ready after {timeout:.0f} s")


def _munge_answers() -> bool:
    return subprocess.run(["munge", "-n"], capture_output=True).returncode == 0


def node_resources() -> dict[str, str]:
    """What slurmd detects on this machine (CPUs, RealMemory, ...)."""
    return dict(item.split("=", 1) for item in _run("slurmd", "-C").stdout.split() if "=" in item)


# The test node offers at most this many CPUs, whatever the machine has: fewer than some rules
# ask for, so that the slurm test shows the profile's cap on threads at work everywhere.
NODE_CPUS = 2


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"local SLURM: {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result


class LocalSlurm:
    def __init__(self, work_dir: Path) -> None:
        self.dir = work_dir.resolve()
        self.conf = self.dir / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pid_files: list[Path] = []  # of the daemons this object started, in start order
        self.db_port, self.dbd_port = _free_port(), _free_port()  # MariaDB's, slurmdbd's
        self.mariadb: subprocess.Popen | None = None
        self.db_dir: Path | None = None
        self.linked_conf = False

    # -- start -------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalSlurm:
        try:
            for sub in ("state", "spool", "log", "run"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            self._start_munge()
            self._start_mariadb()
            self._write_config()
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SYSTEM_CONF.symlink_to(self.conf)
            self.linked_conf = True
            self._start("slurmdbd", "slurmdbd.pid")
            _wait(self._dbd_listening, "slurmdbd")
            self._start("slurmctld", "slurmctld.pid", "-i")
            self._start("slurmd", "slurmd.pid")
            _wait(lambda: self.sinfo_state() == "idle", "the node (sinfo says idle)")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_munge(self) -> None:
        if _munge_answers():
            return  # already running: not ours to stop
        Path("/run/munge").mkdir(exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        _run("runuser", "-u", "munge", "--", "munged")
        self.pid_files.append(Path("/run/munge/munged.pid"))
        _wait(_munge_answers, "munged")

    def _start_mariadb(self) -> None:
        self.db_dir = Path(tempfile.mkdtemp(prefix="local-slurm-db-"))
        shutil.chown(self.db_dir, "mysql", "mysql")
        data, sock = self.db_dir / "data", self.db_dir / "mysqld.sock"
        _run("mariadb-install-db", "--user=mysql", f"--datadir={data}", "--auth-root-authentication-method=socket")
        pid = self.db_dir / "mariadbd.pid"
        with open(self.dir / "log" / "mariadb.log", "w") as log:
            self.mariadb = subprocess.Popen(
                ["mariadbd", "--user=mysql", f"--datadir={data}", f"--socket={sock}", f"--pid-file={pid}",
                 f"--port={self.db_port}", "--bind-address=127.0.0.1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pid_files.append(pid)
        sql = ["mariadb", f"--socket={sock}", "-u", "root"]
        _wait(lambda: subprocess.run([*sql, "-e", "select 1"], capture_output=True).returncode == 0, "MariaDB")
        _run(*sql, "-e", "CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
             " GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")

    def _write_config(self) -> None:
        host = socket.gethostname().split(".")[0]
        detected = node_resources()
        memory = int(detected["RealMemory"]) - 512  # a node reporting less than configured is drained
        run, log = self.dir / "run", self.dir / "log"
        self.conf.write_text(
            f"""ClusterName=pipeline-test
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
JobAcctGatherType=jobacct_gather/none
AccountingStoreFlags=job_comment
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.dbd_port}
SlurmctldPidFile={run}/slurmctld.pid
SlurmdPidFile={run}/slurmd.pid
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={self.dir}/state
SlurmdSpoolDir={self.dir}/spool
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
SlurmctldDebug=info
NodeName={host} NodeAddr=127.0.0.1 CPUs={min(int(detected["CPUs"]), NODE_CPUS)} RealMemory={memory} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
        )
        dbd = self.dir / "slurmdbd.conf"  # slurmdbd reads it from beside SLURM_CONF
        dbd.write_text(
            f"""AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.dbd_port}
SlurmUser=root
PidFile={run}/slurmdbd.pid
LogFile={log}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
"""
        )
        dbd.chmod(0o600)

    def _start(self, daemon: str, pid_name: str, *args: str) -> None:
        pid = self.dir / "run" / pid_name
        _run(daemon, *args, env=self.env)  # each daemonizes itself and writes its pid file
        self.pid_files.append(pid)
        _wait(pid.exists, daemon)

    def _dbd_listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.dbd_port)) == 0

    # -- use ---------------------------------------------------------------------------------------------
    def sinfo_state(self) -> str:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
        return result.stdout.strip()

    def accounted_jobs(self) -> list[tuple[str, str]]:
        """(comment, state) of every job the accounting database saw; Snakemake's executor
        comments each job with its rule (`rule_<name>...`)."""
        out = _run("sacct", "-a", "-n", "-X", "-P", "-o", "Comment%300,State", "-S", "now-1days", env=self.env).stdout
        return [tuple(line.split("|")[:2]) for line in out.splitlines() if line]

    def controller_log(self) -> str:
        return (self.dir / "log" / "slurmctld.log").read_text(errors="replace")

    # -- stop --------------------------------------------------------------------------------------------
    def __exit__(self, *exc) -> None:
        for pid_file in reversed(self.pid_files):
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                continue
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.2)
        self.pid_files.clear()
        if self.mariadb is not None:
            self.mariadb.wait(timeout=30)  # our own child: reap it
        if self.db_dir is not None:
            shutil.rmtree(self.db_dir, ignore_errors=True)
        if self.linked_conf:
            SYSTEM_CONF.unlink()
            self.linked_conf = False
