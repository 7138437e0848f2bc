"""Named presets of the engine: how σ pairs are drawn, weighted and compared, and how θ⁻ moves.

`ct` is the paper's recipe (CM consistency training), `ict` Song & Dhariwal 2023's, and
`ct-short` the `ct` curriculum shortened to s₁ = 6 so minutes of CPU can show learning (DESIGN §10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from cmzoo.engine import schedules
from cmzoo.engine.parameterization import RHO, SIGMA_MAX, SIGMA_MIN
from cmzoo.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """One consistency-training recipe; every schedule is a pure function of the global step."""

    name: str
    description: str
    curriculum: Literal["ct", "ict"]  # N(k) formula
    s0: int
    s1: int
    mu0: float | None  # target EMA μ₀ of the ct schedule; None: μ = 0 (target = stop-grad online)
    index_sampling: Literal["uniform", "lognormal"]
    weighting: Literal["uniform", "ict"]  # λ = 1, or λ = 1/(σ_{i+1} − σ_i)
    distance: str
    lr: float
    batch_size: int
    sample_ema: float
    p_mean: float = -1.1
    p_std: float = 2.0
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    rho: float = RHO

    def num_scales(self, k: int, total_steps: int) -> int:
        """N(k): the number of grid points at global step k of K."""
        fn = schedules.ct_num_scales if self.curriculum == "ct" else schedules.ict_num_scales
        return fn(k, total_steps, self.s0, self.s1)

    def target_ema(self, num_scales: int) -> float:
        """μ(k) for the target network θ⁻."""
        return 0.0 if self.mu0 is None else schedules.ct_target_ema(num_scales, self.s0, self.mu0)

    def sigmas(self, num_scales: int) -> torch.Tensor:
        return schedules.karras_sigmas(num_scales, self.sigma_min, self.sigma_max, self.rho)

    def sample_indices(self, sigmas: torch.Tensor, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """Interval indices i (pairs σ_i, σ_{i+1}) for one batch."""
        if self.index_sampling == "uniform":
            return schedules.sample_uniform_indices(len(sigmas), batch, generator)
        return schedules.sample_lognormal_indices(sigmas, batch, generator, self.p_mean, self.p_std)

    def weight(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        """λ for each pair."""
        return torch.ones_like(sigma) if self.weighting == "uniform" else schedules.ict_weight(sigma, sigma_next)

    def summary(self) -> str:
        n0, n1 = self.num_scales(0, 1), self.num_scales(1, 1)
        mu = "μ = 0" if self.mu0 is None else f"μ {self.target_ema(n0):.4g} → {self.target_ema(n1):.5g}"
        return f"recipe {self.name}: N {n0} → {n1}, {mu}, {self.distance}, {self.index_sampling} σ-index ({self.description})"


RECIPES: dict[str, Recipe] = {
    "ct": Recipe(
        name="ct", description="the paper's consistency training (CM App. C)",
        curriculum="ct", s0=2, s1=150, mu0=0.9, index_sampling="uniform", weighting="uniform",
        distance="lpips", lr=5e-4, batch_size=32, sample_ema=0.9999,
    ),
    "ict": Recipe(
        name="ict", description="improved consistency training (Song & Dhariwal 2023)",
        curriculum="ict", s0=10, s1=1280, mu0=None, index_sampling="lognormal", weighting="ict",
        distance="pseudo_huber", lr=1e-4, batch_size=32, sample_ema=0.9999,
    ),
    "ct-short": Recipe(
        name="ct-short", description="short CPU curriculum, s₁ = 6 instead of the paper's 150 (DESIGN §10)",
        curriculum="ct", s0=2, s1=6, mu0=0.9, index_sampling="uniform", weighting="uniform",
        distance="pseudo_huber", lr=1e-3, batch_size=32, sample_ema=0.995,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]
