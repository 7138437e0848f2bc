"""Consistency sampling: one-step and multistep (CM Algorithm 1), zero-shot editing (CM Algorithm 4),
and any-size sampling and editing for function backbones (paper App. D.3).

Every sampler takes `(model, x, sigmas, labels=None, generator=None)`, then keyword-only what is its
own (`sizes`; `mask` and `transform`; `sigma_min`), as every k-diffusion sampler takes one signature:
`x` is the noise, or for editing the reference image. Plain loops over explicit σ lists; the RNG is
passed in.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from cmzoo.engine.editing import INPAINTING, LinearTransform, impose, known_part
from cmzoo.engine.parameterization import SIGMA_MAX, SIGMA_MIN, ConsistencyFunction
from cmzoo.engine.schedules import karras_sigmas
from cmzoo.errors import ConfigError

Size = tuple[int, int]
Tensor = torch.Tensor


def multistep_sample(
    model: ConsistencyFunction,
    noise: Tensor,
    sigmas: Sequence[float] = (SIGMA_MAX,),
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    sigma_min: float = SIGMA_MIN,
) -> Tensor:
    """x = f(σ₁ z, σ₁), then x ← f(clip(x) + √(τ² − σ_min²) z, τ) for each later τ (decreasing).

    Every denoised image that feeds a further step is clamped to [-1, 1], as the reference sampler's
    `clip_denoised=True`; the returned (last) one is not, so a one-step sample is exactly f(σ₁ z, σ₁).
    """
    check_sigmas(sigmas, sigma_min)
    x = denoise(model, noise * sigmas[0], sigmas[0], labels)
    for tau in sigmas[1:]:
        x = denoise(model, renoise(x.clamp(-1, 1), tau, generator, sigma_min), tau, labels)
    return x


def sample_at_sizes(
    model: ConsistencyFunction,
    noise: Tensor,
    sigmas: Sequence[float] = (SIGMA_MAX,),
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    sizes: Sequence[Size],
    sigma_min: float = SIGMA_MIN,
) -> tuple[dict[Size, Tensor], object]:
    """Samples of a function backbone at every size in `sizes` from ONE function per image.

    Earlier steps run at the training size; the last step is `render_at_sizes`, with the skip term of
    the resized input after several steps and none at other sizes for a one-step sample from pure noise
    (c_skip(σ_max) ≈ 4e-5; paper App. D.3). At the input's size this is exactly `multistep_sample`.
    """
    check_sigmas(sigmas, sigma_min)
    x = noise * sigmas[0]
    if len(sigmas) > 1:
        previous = multistep_sample(model, noise, sigmas[:-1], labels, generator, sigma_min=sigma_min)
        x = renoise(previous.clamp(-1, 1), sigmas[-1], generator, sigma_min)
    return render_at_sizes(model, x, sigmas[-1], sizes, labels, resized_skip=len(sigmas) > 1)


def edit_sample(
    model: ConsistencyFunction,
    reference: Tensor,
    sigmas: Sequence[float],
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    mask: Tensor,
    transform: LinearTransform = INPAINTING,
    sigma_min: float = SIGMA_MIN,
) -> Tensor:
    """CM Algorithm 4: x = f(y + σ₁ z, σ₁), then x ← f(x + √(τ² − σ_min²) z, τ) for each later τ, where
    every denoised image is clamped to [-1, 1] and then has the known part of y imposed — the reference
    code's order, so every step's input (and the returned image) keeps the known part exactly.
    """
    check_sigmas(sigmas, sigma_min)
    y = known_part(reference, mask, transform)
    x = perturb(y, sigmas[0], generator)
    for i, tau in enumerate(sigmas):
        if i:
            x = renoise(x, tau, generator, sigma_min)
        x = impose(y, denoise(model, x, tau, labels).clamp(-1, 1), mask, transform)
    return x


def edit_at_sizes(
    model: ConsistencyFunction,
    reference: Tensor,
    sigmas: Sequence[float],
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    mask: Tensor,
    sizes: Sequence[Size],
    transform: LinearTransform = INPAINTING,
    sigma_min: float = SIGMA_MIN,
) -> tuple[dict[Size, Tensor], object]:
    """`edit_sample` of a function backbone at every size in `sizes` from the last step's function.

    At the reference's size this is exactly `edit_sample`. At other sizes the known part is not imposed
    (the reference is given at its own size only): it enters through the skip term of the last step's
    input, bilinearly resized. Returns ({(H, W): images}, the last step's functions c_out·F_θ).
    """
    check_sigmas(sigmas, sigma_min)
    y = known_part(reference, mask, transform)
    if len(sigmas) > 1:
        x = edit_sample(model, reference, sigmas[:-1], labels, generator, mask=mask, transform=transform,
                        sigma_min=sigma_min)
        x = renoise(x, sigmas[-1], generator, sigma_min)
    else:
        x = perturb(y, sigmas[0], generator)
    images, fn = render_at_sizes(model, x, sigmas[-1], sizes, labels, resized_skip=True)
    size = tuple(y.shape[-2:])
    if size in images:
        images[size] = impose(y, images[size].clamp(-1, 1), mask, transform)
    return images, fn


def sigma_schedule(steps: int | Sequence[float]) -> list[float]:
    """An explicit decreasing σ list, or n steps: the n largest points of an (n+1)-point Karras grid."""
    if isinstance(steps, int):
        if steps < 1:
            raise ConfigError(f"--steps must be ≥ 1, got {steps}")
        return [SIGMA_MAX] if steps == 1 else karras_sigmas(steps + 1).flip(0)[:steps].tolist()
    sigmas = [float(s) for s in steps]
    check_sigmas(sigmas)
    return sigmas


# ---- the steps the samplers are made of -----------------------------------------------------------------


def render_at_sizes(
    model: ConsistencyFunction,
    x: Tensor,
    sigma: float,
    sizes: Sequence[Size],
    labels: Tensor | None = None,
    resized_skip: bool = True,
) -> tuple[dict[Size, Tensor], object]:
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


def denoise(model: ConsistencyFunction, x: Tensor, sigma: float, labels: Tensor | None) -> Tensor:
    """f(x, σ) at one noise level σ for the whole batch."""
    return model(x, torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype), labels)


def renoise(x: Tensor, tau: float, generator: torch.Generator | None, sigma_min: float = SIGMA_MIN) -> Tensor:
    """x + √(τ² − σ_min²) z: a denoised image taken back to noise level τ (CM Algorithm 1)."""
    return x + (tau**2 - sigma_min**2) ** 0.5 * randn_like(x, generator)


def perturb(y: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    """x ~ N(y, σ² I): the first input of Algorithm 4."""
    return y + sigma * randn_like(y, generator)


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Gaussian noise shaped like x, drawn on the generator's device (so a CPU seed is reproducible)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def check_sigmas(sigmas: Sequence[float], sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> None:
    """A sampling σ list must be non-empty, finite, strictly decreasing and within [σ_min, σ_max]:
    below σ_min, √(τ² − σ_min²) has no real value; above σ_max, f was never trained."""
    values = [float(s) for s in sigmas]
    if not values or not all(math.isfinite(s) for s in values) or any(b >= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"sampling σ list must be non-empty, finite and strictly decreasing, got {values}")
    if values[0] > sigma_max or values[-1] < sigma_min:
        raise ConfigError(f"sampling σ list {values} leaves the trained range: every σ must lie in "
                          f"[σ_min, σ_max] = [{sigma_min:g}, {sigma_max:g}]")
