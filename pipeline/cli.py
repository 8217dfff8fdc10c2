"""What every stage's `python -m pipeline.<stage>` entry point shares."""

from __future__ import annotations

import ctypes
import logging
import platform
import sys
from collections.abc import Callable
from contextlib import nullcontext

from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.errors import PipelineError
from pipeline.progress import on_terminal

# glibc's mallopt parameters (malloc.h). 32 MB is as far as glibc's own adjustment of the
# threshold goes on 64-bit (and some releases refuse more).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
KEPT_FREE_BYTES = 2**30


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks (up to 32 MB each, up to 1 GB in all) for reuse
    instead of handing them back to the OS. Torch on the CPU allocates and frees every
    activation of every step; by default many of them come back as fresh pages, each faulted
    in and zeroed by the kernel: about 20,000 page faults per training step at 64x64, 15-20 %
    of the step (docs/benchmarks.md). Blocks above the threshold are still mapped afresh. Returns
    whether both settings applied (glibc only)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    applied = [libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES)]
    return all(applied)


def run(main: Callable[[], None]) -> None:
    """Run a stage's main with logging to stderr (the rule sends it to the rule's log file);
    an expected failure ends the process with its one-line message and exit status 1."""
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # On a terminal, log lines go above a running progress bar instead of onto its line.
        with logging_redirect_tqdm() if on_terminal() else nullcontext():
            main()
    except PipelineError as err:
        logging.getLogger("pipeline").error("%s", err)
        sys.exit(1)
