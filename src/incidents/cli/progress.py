"""Progress bars for the CLI's long work (exports, rebuilds, backups)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn


def progress_bars() -> Progress:
    """Bars with counts and time remaining, on stderr so stdout stays the command's
    output; hidden when stderr is not a terminal (scripts, CI)."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )
