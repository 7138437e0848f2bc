"""Wall-clock timing with warm-up and device synchronisation, and peak memory of a measured region."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed repetition."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max − min) / median: the relative spread of the repetitions."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median > 0 else 0.0


def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> Timing:
    """Call `fn` `warmup` times untimed, then `repeats` times, each timed between two synchronisations."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return Timing(tuple(seconds))


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _release_free_heap() -> None:
    """Return glibc's freed-but-kept heap to the OS, so the resident size is what is really in use."""
    libc = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(libc).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: the baseline may include freed memory
        pass


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


class PeakMemory:
    """Peak memory of a region: CUDA `max_memory_allocated`, or on the CPU the peak resident set size.

    On the CPU the Linux high-water mark (VmHWM) is reset at the start through /proc/self/clear_refs;
    the figure is that peak minus the resident size when the meter was created (before the model was
    built), so it counts the weights, optimizer state and activations, not the interpreter. Where the
    mark cannot be reset, the process-lifetime peak is used and `method` says so.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            self.baseline_mib = 0.0
            self.method = "torch.cuda.max_memory_allocated"
        else:
            _release_free_heap()
            self.baseline_mib = (_status_kib("VmRSS") or 0) / 1024
            self.method = "peak RSS above the pre-build baseline"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self.method = "process-lifetime peak RSS (could not reset the high-water mark)"

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _status_kib("VmHWM")
        if hwm is None:  # not Linux: ru_maxrss is the lifetime peak in KiB
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return hwm / 1024 - self.baseline_mib
