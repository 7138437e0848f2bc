"""Noise grids and curricula: Karras σ grid, CT / iCT discretisation curricula, target-EMA schedule,
σ-index sampling, and ECT's continuous noise pairs. Every function is pure in the global step k, so
resume and DDP agree."""

from __future__ import annotations

import math

import torch

from cmzoo.engine.parameterization import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN


def karras_sigmas(
    n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> torch.Tensor:
    """σ_i = (σ_min^{1/ρ} + (i−1)/(N−1)(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ, i = 1…N, ascending (EDM eq. 5)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (lo + ramp * (hi - lo)) ** rho
    sigmas[0], sigmas[-1] = sigma_min, sigma_max  # exact ends despite float rounding
    return sigmas.float()


def ct_num_scales(k: int, total_steps: int, s0: int = 2, s1: int = 150) -> int:
    """N(k) = ⌈√(k/K ((s₁+1)² − s₀²) + s₀²) − 1⌉ + 1 (CM paper App. C, as the reference code)."""
    frac = min(k, total_steps) / max(total_steps, 1)
    return math.ceil(math.sqrt(frac * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1


def ict_num_scales(k: int, total_steps: int, s0: int = 10, s1: int = 1280) -> int:
    """N(k) = min(s₀·2^⌊k/K'⌋, s₁) + 1 with K' = ⌊K / (log₂⌊s₁/s₀⌋ + 1)⌋ (iCT eq. 6)."""
    k_prime = max(math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1)), 1)
    return min(s0 * 2 ** (min(k, total_steps) // k_prime), s1) + 1


def ct_target_ema(num_scales: int, s0: int = 2, mu0: float = 0.9) -> float:
    """μ(k) = exp(s₀ ln μ₀ / (N(k) − 1)), dividing by the intervals as both official CM code bases."""
    return math.exp(s0 * math.log(mu0) / (num_scales - 1))


def lognormal_index_probs(sigmas: torch.Tensor, p_mean: float = -1.1, p_std: float = 2.0) -> torch.Tensor:
    """p(i) ∝ erf((ln σ_{i+1} − P_mean)/(√2 P_std)) − erf((ln σ_i − P_mean)/(√2 P_std)) (iCT §3.5)."""
    cdf = torch.erf((torch.log(sigmas.double()) - p_mean) / (math.sqrt(2) * p_std))
    p = cdf[1:] - cdf[:-1]
    return (p / p.sum()).float()


def sample_uniform_indices(num_scales: int, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Interval indices i ∈ {0, …, N−2} (pairs σ_i, σ_{i+1}), uniform as the CT recipe."""
    return torch.randint(0, num_scales - 1, (batch,), generator=generator)


def sample_lognormal_indices(
    sigmas: torch.Tensor, batch: int, generator: torch.Generator | None = None, p_mean: float = -1.1, p_std: float = 2.0
) -> torch.Tensor:
    """Interval indices drawn from the discretised lognormal over the grid `sigmas` (iCT)."""
    return torch.multinomial(lognormal_index_probs(sigmas, p_mean, p_std), batch, replacement=True, generator=generator)


def ict_weight(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """λ(σ_i) = 1 / (σ_{i+1} − σ_i) (iCT §3.4)."""
    return 1.0 / (sigma_next - sigma)



def sample_lognormal_sigmas(batch: int, p_mean: float, p_std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """σ = exp(P_mean + P_std·n), n ~ N(0, 1): the continuous noise-level density of EDM and ECT."""
    return (p_mean + p_std * torch.randn(batch, generator=generator)).exp()


def edm_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)², the EDM loss weight (EDM eq. 8, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def ect_stage(k: int, total_steps: int, denoise_steps: int, stages: int) -> int | None:
    """ECT stage of global step k: None during the first `denoise_steps` (the denoiser phase), then
    0 … stages−1 over equal shares of the remaining steps (Δt halves at every stage for q = 2)."""
    if k < denoise_steps:
        return None
    per_stage = max((total_steps - denoise_steps) / stages, 1)
    return min(int((k - denoise_steps) // per_stage), stages - 1)


def ect_r(t: torch.Tensor, stage: int, q: float = 2.0, k: float = 8.0, b: float = 1.0) -> torch.Tensor:
    """r = max(t·(1 − q^{−(stage+1)}·(1 + k·sigmoid(−b·t))), 0): the ECT mapping t → r < t whose gap
    Δt = t − r shrinks by q every stage (Geng et al. 2024, the reference code's `t_to_r_sigmoid`)."""
    decay = q ** -(stage + 1) * (1 + k * torch.sigmoid(-b * t))
    return (t * (1 - decay)).clamp(min=0)
