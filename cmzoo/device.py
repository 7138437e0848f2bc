"""Resolving the device a command asked for (`--device auto|cpu|cuda|cuda:N`)."""

from __future__ import annotations

import torch

from cmzoo.errors import ConfigError


def resolve_device(name: str | torch.device) -> torch.device:
    """`name` as a torch device: `auto` is CUDA when available, else the CPU; a device not here is a ConfigError."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:  # else CUDA's "invalid device ordinal", deep inside the first copy
            raise ConfigError(f"device {name!r} asked for, but {count} GPU(s) are visible (cuda:0 to "
                              f"cuda:{count - 1}); use one of those, or check CUDA_VISIBLE_DEVICES")
    return device


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`; from the CPU to a GPU through pinned memory, without waiting for the copy."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def device_rng_state(device: torch.device) -> torch.Tensor | None:
    """The RNG state of this process's CUDA device, or None on the CPU. Only this device's: a checkpoint
    that held every visible GPU's could not be resumed where fewer are visible."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_device_rng_state(state: torch.Tensor | list[torch.Tensor], device: torch.device) -> None:
    """Restore `device_rng_state` on a CUDA device (nothing on the CPU). Older checkpoints hold one state per
    GPU visible when they were written: this device's is taken when they have it."""
    if device.type != "cuda":
        return
    if isinstance(state, (list, tuple)):
        index = device.index or 0
        if index >= len(state):
            return
        state = state[index]
    torch.cuda.set_rng_state(state, device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 autocast on a GPU that supports it, else fp32 (as on the CPU, where bf16 is slower and
    CPU results stay comparable); any other value as it is."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def matmul_mode() -> str:
    """How float32 matrix products run (torch.set_float32_matmul_precision), for a run's first line."""
    return {"highest": "fp32 matmuls exact (TF32 off)", "high": "fp32 matmuls in TF32",
            "medium": "fp32 matmuls in bf16"}[torch.get_float32_matmul_precision()]
