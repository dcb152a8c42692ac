"""The rich Console every fer_bench command prints through."""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console

#: Width used when the output is not a terminal (CI logs, pipes, files): fer_bench's
#: tables (13 columns for the leaderboard) are unreadable folded into rich's 80 columns.
NON_TTY_WIDTH = 220


def wide_console(file: IO[str] | None = None) -> Console:
    """A Console on ``file`` (default stdout) with the terminal's width, or ``NON_TTY_WIDTH``
    when ``file`` is not a terminal."""
    stream = file or sys.stdout
    return Console(file=stream, width=None if stream.isatty() else NON_TTY_WIDTH)
