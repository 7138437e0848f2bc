"""The rich progress bar shared by training and pre-training."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


def progress_bar(label: str, fields: str, console: Console) -> Progress:
    """A bar with step counter, ETA and a `fields` template over the task's fields (e.g. loss)."""
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
                    TimeRemainingColumn(), console=console)
