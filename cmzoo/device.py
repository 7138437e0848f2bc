"""Resolving the device a command asked for (`--device auto|cpu|cuda|cuda:N`)."""

from __future__ import annotations

import torch

from cmzoo.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`name` as a torch device: `auto` is CUDA when available, else the CPU; a device not here is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
