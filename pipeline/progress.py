"""Progress of long work: tqdm's bar on a terminal; in a rule's log file (stderr redirected),
a plain line at most every LOG_INTERVAL_S seconds instead of a bar redrawn with carriage
returns, so that log lines never carry bar fragments."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm

LOG_INTERVAL_S = 30


class _Lines:
    """A file for tqdm that writes each redraw as one whole line."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs), drawn for where stderr goes."""
    if on_terminal():
        return tqdm(iterable, **kwargs)
    return tqdm(iterable, file=_Lines(sys.stderr), mininterval=LOG_INTERVAL_S, ascii=True, ncols=100, **kwargs)
