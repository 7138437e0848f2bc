"""The consistency-training loss (CM eq. 10, iCT eq. 9), one function for every recipe, and the
EDM denoiser loss that ECT trains first."""

from __future__ import annotations

import torch

from cmzoo.engine.distances import Distance
from cmzoo.engine.parameterization import ConsistencyFunction, append_dims


def consistency_loss(
    online: ConsistencyFunction,
    target: ConsistencyFunction,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    noise: torch.Tensor,
    weight: torch.Tensor,
    distance: Distance,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean_b λ_b · d(f_θ(x + σ_{i+1} z, σ_{i+1}), f_θ⁻(x + σ_i z, σ_i)) with one z for both points."""
    x_next = x0 + append_dims(sigma_next, x0.ndim) * noise
    x_cur = x0 + append_dims(sigma, x0.ndim) * noise
    devices = [x0.device] if x0.device.type == "cuda" else []
    rng_cpu = torch.get_rng_state()
    rng_cuda = [torch.cuda.get_rng_state(d) for d in devices]
    online_out = online(x_next, sigma_next, labels)
    # Replay the RNG state the online branch started from so dropout draws the same mask for the
    # target; fork_rng leaves the global stream where the online branch left it.
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.set_rng_state(rng_cpu)
        for d, s in zip(devices, rng_cuda):
            torch.cuda.set_rng_state(s, d)
        target_out = target(x_cur, sigma, labels)
    return (weight * distance(online_out.float(), target_out.float())).mean()


def denoising_loss(
    online: ConsistencyFunction,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    weight: torch.Tensor,
    distance: Distance,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean_b λ_b · d(f_θ(x + σ z, σ), x): the EDM denoiser loss (EDM eq. 2, 8) on the same f_θ."""
    denoised = online(x0 + append_dims(sigma, x0.ndim) * noise, sigma, labels)
    return (weight * distance(denoised.float(), x0.float())).mean()
