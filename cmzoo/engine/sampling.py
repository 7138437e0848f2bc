"""One-step and multistep consistency sampling (CM Algorithm 1), and any-size sampling for
function backbones (paper App. D.3). Plain loops over explicit σ lists; the RNG is passed in."""

from __future__ import annotations

from typing import Sequence

import math

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
    """x = f(σ₁ z, σ₁), then x ← f(clip(x) + √(τ² − σ_min²) z, τ) for each later τ (decreasing).

    Every denoised image that feeds a further step is clamped to [-1, 1], as the reference sampler's
    `clip_denoised=True`; the returned (last) one is not, so a one-step sample is exactly f(σ₁ z, σ₁).
    """
    check_sigmas(sigmas, sigma_min)
    x = denoise(model, noise * sigmas[0], sigmas[0], labels)
    for tau in sigmas[1:]:
        x = denoise(model, renoise(x.clamp(-1, 1), tau, generator, sigma_min), tau, labels)
    return x


def renoise(x: torch.Tensor, tau: float, generator: torch.Generator | None, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """x + √(τ² − σ_min²) z: a denoised image taken back to noise level τ (CM Algorithm 1)."""
    return x + (tau**2 - sigma_min**2) ** 0.5 * randn_like(x, generator)


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

    Earlier steps run at the training size; the last step is `render_at_sizes`, with the skip term of
    the resized input after several steps and none at other sizes for a one-step sample from pure noise
    (c_skip(σ_max) ≈ 4e-5; paper App. D.3). At the input's size this is exactly `multistep_sample`.
    """
    check_sigmas(sigmas, sigma_min)
    x = noise * sigmas[0]
    if len(sigmas) > 1:
        previous = multistep_sample(model, noise, sigmas[:-1], labels, generator, sigma_min)
        x = renoise(previous.clamp(-1, 1), sigmas[-1], generator, sigma_min)
    return render_at_sizes(model, x, sigmas[-1], sizes, labels, resized_skip=len(sigmas) > 1)


def render_at_sizes(
    model: ConsistencyFunction,
    x: torch.Tensor,
    sigma: float,
    sizes: Sequence[Size],
    labels: torch.Tensor | None = None,
    resized_skip: bool = True,
) -> tuple[dict[Size, torch.Tensor], object]:
    """f(x, σ) of a function backbone rendered at every size in `sizes` from ONE function per image.

    The function c_out·F_θ is rendered at each size and the skip term c_skip·x added: x itself at x's
    size (so that size is exactly f(x, σ)), x bilinearly resized at other sizes when `resized_skip`,
    else nothing. Returns ({(H, W): images}, image functions) where the functions are c_out·F_θ.
    """
    per_image = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
    skip, _, _ = model.scalings(per_image, x.ndim)
    fn = model.output_function(x, per_image, labels)  # c_out·F_θ: the sample's own function
    images = {}
    for h, w in sizes:
        rendered = fn.render(h, w)
        if (h, w) == tuple(x.shape[-2:]):
            rendered = rendered + skip * x
        elif resized_skip:
            rendered = rendered + skip * F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        images[(h, w)] = rendered
    return images, fn


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise shaped like x, drawn on the generator's device (so a CPU seed is reproducible)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def denoise(model: ConsistencyFunction, x: torch.Tensor, sigma: float, labels: torch.Tensor | None) -> torch.Tensor:
    """f(x, σ) at one noise level σ for the whole batch."""
    return model(x, torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype), labels)


def check_sigmas(sigmas: Sequence[float], sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> None:
    """A sampling σ list must be non-empty, finite, strictly decreasing and within [σ_min, σ_max]:
    below σ_min, √(τ² − σ_min²) has no real value; above σ_max, f was never trained."""
    values = [float(s) for s in sigmas]
    if not values or not all(math.isfinite(s) for s in values) or any(b >= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"sampling σ list must be non-empty, finite and strictly decreasing, got {values}")
    if values[0] > sigma_max or values[-1] < sigma_min:
        raise ConfigError(f"sampling σ list {values} leaves the trained range: every σ must lie in "
                          f"[σ_min, σ_max] = [{sigma_min:g}, {sigma_max:g}]")
