"""Denoising distance (paper §4.1, App. B) and nearest-neighbour error of samples: cheap measures of
what a consistency model has learned, usable during training and in learning tests."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

# A one-step denoiser (x₀ + σz, σ (B,), labels) → x₀: a consistency function, or a recipe's `denoiser`.
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@torch.no_grad()
def denoising_distance(
    model: Denoiser, x0: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
) -> float:
    """Mean squared error of the one-step denoising f_θ(x₀ + σz, σ) against x₀ (per pixel)."""
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    sig = torch.full((x0.shape[0],), float(sigma), device=x0.device)
    return (model(x0 + sigma * noise, sig, labels) - x0).pow(2).mean().item()


def denoising_distances(
    model: Denoiser, x0: torch.Tensor, sigmas: Sequence[float], seed: int = 0,
    labels: torch.Tensor | None = None,
) -> dict[float, float]:
    """Denoising distance at each σ bucket, with the same noise for every call of the same seed."""
    return {s: denoising_distance(model, x0, s, torch.Generator().manual_seed(seed + i), labels)
            for i, s in enumerate(sigmas)}


def nearest_neighbour_mse(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over samples of the per-pixel MSE to the closest reference image."""
    d = torch.cdist(samples.flatten(1).double(), reference.flatten(1).double()).pow(2) / samples[0].numel()
    return d.min(dim=1).values.mean().item()
