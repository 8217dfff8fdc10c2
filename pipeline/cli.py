"""What every stage's `python -m pipeline.<stage>` entry point shares."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from contextlib import nullcontext

from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.errors import PipelineError
from pipeline.progress import on_terminal


def run(main: Callable[[], None]) -> None:
    """Run a stage's main with logging to stderr (the rule sends it to the rule's log file);
    an expected failure ends the process with its one-line message and exit status 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # On a terminal, log lines go above a running progress bar instead of onto its line.
        with logging_redirect_tqdm() if on_terminal() else nullcontext():
            main()
    except PipelineError as err:
        logging.getLogger("pipeline").error("%s", err)
        sys.exit(1)
