"""Optimizers and the learning-rate schedule, both pure in the global step (resume and DDP agree)."""

from __future__ import annotations

import torch

# RAdam (the paper's) damps its first ~2/(1 − β₂) steps by variance rectification, which is most of a
# short CPU run; Adam takes full steps from the start.
OPTIMIZERS = {"radam": torch.optim.RAdam, "adam": torch.optim.Adam}


def lr_factor(step: int, steps: int, decay: float = 0.0, warmup: int = 0) -> float:
    """The learning rate's multiplier at 0-based `step` of `steps`: a linear rise over the first
    min(`warmup`, steps/10) steps, 1, then a linear fall to 0 over the last `decay` fraction (0: none)."""
    rise = min(warmup, steps // 10)
    up = min(1.0, (step + 1) / rise) if rise > 0 else 1.0
    decay_steps = decay * steps
    return up * (1.0 if decay_steps <= 0 else min(1.0, (steps - step) / decay_steps))
