"""FLOPs per image (torch's FlopCounterMode) and the device's peak rate, for the fraction of peak.

PyTorch counts attention only for its CUDA kernels; the CPU's fused kernel is registered here with
the same formula, so a CPU count equals a CUDA (or meta-device) count.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from cmzoo.bench.measure import time_call

aten = torch.ops.aten


@functools.cache
def register_cpu_attention_formulas() -> None:
    """Count the CPU flash-attention kernel (forward and backward) as PyTorch counts the CUDA ones."""

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations (a multiply-add counts 2) of one call of `fn`."""
    register_cpu_attention_formulas()
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# Datasheet dense (no sparsity) TFLOP/s: (bf16 tensor core, fp32 non-tensor). First match wins.
DATASHEET_TFLOPS: list[tuple[str, float, float]] = [
    ("H100 PCIe", 756.0, 51.2),
    ("H100", 989.4, 66.9),
    ("H200", 989.4, 66.9),
    ("A100", 312.0, 19.5),
    ("A6000", 154.8, 38.7),
    ("L40S", 362.1, 91.6),
    ("4090", 165.2, 82.6),
]


def datasheet_tflops(device_name: str, precision: str) -> float | None:
    """The datasheet's dense rate of a known GPU for bf16 or fp32 matrix work, else None."""
    for key, bf16, fp32 in DATASHEET_TFLOPS:
        if key.lower() in device_name.lower():
            return bf16 if precision in ("bf16", "fp16") else fp32
    return None


@functools.cache
def measured_matmul_tflops(device: str, precision: str, n: int = 2048, repeats: int = 5) -> float:
    """The best rate of an n×n×n matrix product on `device` in `precision`: the CPU's practical peak."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timing = time_call(lambda: a @ b, torch.device(device), warmup=1, repeats=repeats)
    return 2 * n**3 / min(timing.seconds) / 1e12


def peak_tflops(device: torch.device, precision: str) -> tuple[float, str]:
    """(peak TFLOP/s, where it comes from): the datasheet on a known GPU, else a measured matmul rate."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        rate = datasheet_tflops(name, precision)
        if rate is not None:
            return rate, f"datasheet dense {precision} of {name}"
    return measured_matmul_tflops(str(device), precision), f"measured {precision} 2048³ matmul"

