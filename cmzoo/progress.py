"""The rich progress bar of every command that runs for more than a few seconds: training,
pre-training, sampling, Inception features, reading image folders and bench rows."""

from __future__ import annotations

import functools

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


@functools.cache
def stderr_console() -> Console:
    """The console a bar draws on unless it is given one. Bars opened inside another bar (a bench row
    that trains and scores a model) must share their console to stack instead of overwriting each other."""
    return Console(stderr=True)


def progress_bar(label: str, fields: str = "", console: Console | None = None, transient: bool = False,
                 disable: bool = False) -> Progress:
    """A bar with step counter, ETA and a `fields` template over the task's fields (e.g. loss).
    `transient` bars disappear when done; `disable` shows nothing."""
    console = console or stderr_console()
    # Written to a file or pipe, a transient bar shows nothing but leaves an empty line behind.
    disable = disable or (transient and not console.is_terminal)
    return Progress(TextColumn(f"[bold]{escape(label)}"), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
                    TimeRemainingColumn(), console=console, transient=transient, disable=disable)
