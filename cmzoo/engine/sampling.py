"""One-step and multistep consistency sampling (CM Algorithm 1), and any-size sampling for
function backbones (paper App. D.3). Plain loops over explicit σ lists; the RNG is passed in."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from cmzoo.engine.parameterization import SIGMA_MAX, SIGMA_MIN, ConsistencyFunction
from cmzoo.errors import ConfigError

Size = tuple[int, int]


def multistep_sample(
    model: ConsistencyFunction,
    noise: torch.Tensor,
    sigmas: Sequence[float] = (SIGMA_MAX,),
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma_min: float = SIGMA_MIN,
) -> torch.Tensor:
    """x = f(σ₁ z, σ₁), then x ← f(x + √(τ² − σ_min²) z, τ) for each later τ (decreasing)."""
    _check_decreasing(sigmas)
    x = _denoise(model, noise * sigmas[0], sigmas[0], labels)
    for tau in sigmas[1:]:
        x = _denoise(model, x + (tau**2 - sigma_min**2) ** 0.5 * _randn_like(x, generator), tau, labels)
    return x


def sample_at_sizes(
    model: ConsistencyFunction,
    noise: torch.Tensor,
    sizes: Sequence[Size],
    sigmas: Sequence[float] = (SIGMA_MAX,),
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma_min: float = SIGMA_MIN,
) -> tuple[dict[Size, torch.Tensor], object]:
    """Samples of a function backbone at every size in `sizes` from ONE function per image.

    Earlier steps run at the training size; the last step's function is rendered at each size, with
    the skip term taken from the bilinearly resized input, or dropped for a one-step sample from
    pure noise (c_skip(σ_max) ≈ 4e-5; paper App. D.3). Returns ({(H, W): images}, image functions)
    where the functions are c_out·F_θ: for one-step sampling they render exactly the samples; after
    several steps the skip term (resized input) is not part of them.
    """
    _check_decreasing(sigmas)
    x = noise * sigmas[0]
    if len(sigmas) > 1:
        x = multistep_sample(model, noise, sigmas[:-1], labels, generator, sigma_min)
        x = x + (sigmas[-1] ** 2 - sigma_min**2) ** 0.5 * _randn_like(x, generator)
    sigma = torch.full((x.shape[0],), float(sigmas[-1]), device=x.device, dtype=x.dtype)
    skip, _, _ = model.scalings(sigma, x.ndim)
    fn = model.output_function(x, sigma, labels)  # c_out·F_θ: the sample's own function
    images = {}
    for h, w in sizes:
        rendered = fn.render(h, w)
        if len(sigmas) > 1:
            rendered = rendered + skip * F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        images[(h, w)] = rendered
    return images, fn


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise shaped like x, drawn on the generator's device (so a CPU seed is reproducible)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _denoise(model: ConsistencyFunction, x: torch.Tensor, sigma: float, labels: torch.Tensor | None) -> torch.Tensor:
    return model(x, torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype), labels)


def _check_decreasing(sigmas: Sequence[float]) -> None:
    if len(sigmas) == 0 or any(b >= a for a, b in zip(sigmas, sigmas[1:])):
        raise ConfigError(f"sampling σ list must be non-empty and strictly decreasing, got {list(sigmas)}")
