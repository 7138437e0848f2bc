"""`half-gap`: an example third-party cmzoo recipe, consistency training on continuous noise pairs.

The core has never heard of it: installing this package adds an entry point in the ``cmzoo`` group, and
``cmzoo recipes`` / ``cmzoo train --recipe half-gap`` find it through the registry. A recipe family is
a class: it draws the σ pairs of each step, and inherits the consistency loss, the consistency function
around the backbone and its samplers from :class:`cmzoo.Recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from cmzoo import Recipe, SigmaPairs, hookimpl

__all__ = ["HalfGap", "cmzoo_register_recipes"]


@dataclass(frozen=True, kw_only=True)
class HalfGap(Recipe):
    """σ_next = t drawn lognormal (P_mean, P_std), σ = ratio·t, weights 1/(t − σ) and μ = 0 (θ⁻ = sg(θ)):
    one stage of ECT's consistency tuning with a fixed gap, from the first step."""

    ratio: float = 0.5

    def pairs(self, k: int, total_steps: int, batch: int, generator: torch.Generator | None) -> SigmaPairs:
        t = (self.p_mean + self.p_std * torch.randn(batch, generator=generator)).exp()
        t = t.clamp(self.sigma_min / self.ratio, self.sigma_max)  # σ = ratio·t stays at or above σ_min
        sigma = self.ratio * t
        return SigmaPairs(sigma, t, 1 / (t - sigma), 0.0, {})

    def summary(self, distance: str | None = None) -> str:
        return (f"recipe {self.name}: σ = {self.ratio:g}·t, t lognormal({self.p_mean:g}, {self.p_std:g}), μ = 0, "
                f"{distance or self.distance} ({self.description})")

    def schedule_text(self, schedule: Mapping[str, float]) -> str:
        return ""  # no curriculum: every step draws alike


@hookimpl
def cmzoo_register_recipes() -> list[Recipe]:
    return [
        HalfGap(name="half-gap", description="consistency training on continuous pairs σ = t/2 (example plugin)",
                distance="pseudo_huber", lr=1e-3, batch_size=32, sample_ema=0.98, optimizer="adam"),
    ]
