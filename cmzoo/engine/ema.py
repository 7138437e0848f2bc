"""Exponential moving averages of the online weights: the target network θ⁻ and the sample EMA."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """θ⁻ ← rate·θ⁻ + (1 − rate)·θ for every parameter; buffers are copied. rate 0 copies exactly."""
    with torch.no_grad():
        t_params, s_params = list(target.parameters()), list(source.parameters())
        if rate == 0.0:
            torch._foreach_copy_(t_params, s_params)
        else:
            torch._foreach_lerp_(t_params, s_params, 1.0 - rate)
        for tb, sb in zip(target.buffers(), source.buffers()):
            tb.copy_(sb)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A gradient-free copy of `module` to hold an EMA."""
    ema = copy.deepcopy(module)
    ema.requires_grad_(False)
    return ema
