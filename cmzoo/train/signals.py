"""Ctrl-C and SIGTERM during training or pre-training: recorded, so that the loop stops at the end of its
step, writes a checkpoint and raises TrainingInterrupted with the command that continues the run."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from cmzoo.errors import TrainingInterrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While entered, SIGINT and SIGTERM only set `signum` (the main thread's handlers are restored on exit)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        self._previous = {s: signal.signal(s, self._record) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _record(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @property
    def asked(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

    def interrupted(self, where: str, checkpoint: Path, command: str) -> TrainingInterrupted:
        """The error to raise once `checkpoint` is written: where the run stopped and how to continue it."""
        name = signal.Signals(self.signum or signal.SIGTERM).name
        return TrainingInterrupted(f"stopped by signal {name} at {where}; checkpoint {checkpoint.name} written — "
                                   f"continue with `{command}`")
