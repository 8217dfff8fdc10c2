"""torchrun as the train rule starts it: torch's own launcher, given longer to let its workers stop
after a SIGTERM where the installed torch lets that be set.

On SIGTERM (SLURM's warning before the time limit, or a preemption) torchrun forwards the signal
and kills its workers SHUTDOWN_TIMEOUT_S later; process 0 needs that time to finish its step and
save the checkpoint. `--shutdown-timeout` is recent (March 2026): an older torchrun stops at once
with "unrecognized arguments" when given it, and waits a fixed 30 s instead.

    python -m pipeline.torchrun --standalone --nproc-per-node 8 -m pipeline.train ...
"""

from __future__ import annotations

import sys

from torch.distributed import run

# Within the SLURM profile's warning (--signal=TERM@300, workflow/profiles/slurm/config.yaml).
SHUTDOWN_TIMEOUT_S = 240


def arguments(argv: list[str]) -> list[str]:
    """torchrun's arguments: `argv`, after the shutdown timeout where this torchrun accepts one."""
    accepts = hasattr(run.get_args_parser().parse_args(["script"]), "shutdown_timeout")
    return ["--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S), *argv] if accepts else list(argv)


if __name__ == "__main__":
    run.main(arguments(sys.argv[1:]))
