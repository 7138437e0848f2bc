"""Named presets of the engine: how σ pairs are drawn, weighted and compared, how θ⁻ moves, what wraps
the backbone and how it samples.

A recipe family is a class behind one call, `pairs(k, K, batch, generator) -> SigmaPairs`, and one
loss, `loss(online, target, x0, pairs, noise, distance, labels)` (as EDM's `VPLoss`, `VELoss`,
`EDMLoss`), so that a new family is a new class; `model(net, …)` wraps the backbone and
`schedule`/`sample` generate from it, and `requires` names the backbone capabilities it needs. Recipes
reach the trainer through the registry (`cmzoo_register_recipes`), these as any plugin's. Three families:

- `GridRecipe`: σ pairs on a Karras grid of N(k) points. `ct` is the paper's recipe (CM consistency
  training), `ict` Song & Dhariwal 2023's, `ct-short` and `ict-short` their curricula shortened so
  that minutes of CPU show learning.
- `EasyConsistencyTuning` (`ect`, Geng et al. 2024): the backbone first learns to denoise (EDM loss),
  then is tuned into a consistency model on continuous noise pairs (t, r) whose gap Δt = t − r halves
  at every stage.
- `MeanFlow` (`meanflow`, Geng et al. 2025): the average velocity u(z_t, r, t) of a flow, trained on
  the MeanFlow identity (engine/meanflow.py); it needs a backbone with a second time input. `meanflow-x`
  has pixel backbones predict the clean image as function backbones do (pixel MeanFlow's x-prediction).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Callable, Literal, Mapping, Sequence

import torch
from torch import nn

from cmzoo.engine import schedules
from cmzoo.engine.distances import Distance, l2
from cmzoo.engine.loss import consistency_loss, denoising_loss
from cmzoo.engine.meanflow import (
    AverageVelocity, meanflow_loss, meanflow_sample, meanflow_sample_at_sizes, sample_times, time_schedule)
from cmzoo.engine.parameterization import RHO, SIGMA_MAX, SIGMA_MIN, ConsistencyFunction
from cmzoo.engine.sampling import Size, multistep_sample, sample_at_sizes, sigma_schedule

Tensor = torch.Tensor


@dataclass(frozen=True)
class SigmaPairs:
    """One batch of noise levels: the online branch sees σ_next, the target σ (< σ_next), weighted λ;
    after the step θ⁻ ← μθ⁻ + (1 − μ)θ with μ = `target_ema`.

    `denoise` marks a denoiser step: the target is the clean image itself (EDM loss, distance l2).
    MeanFlow's pairs are times: `sigma` is r and `sigma_next` is t ≥ r.
    """

    sigma: Tensor
    sigma_next: Tensor
    weight: Tensor
    target_ema: float
    schedule: dict[str, float]  # what the curriculum is at this step, for logs and the progress bar
    denoise: bool = False

    def map(self, fn: Callable[[Tensor], Tensor]) -> "SigmaPairs":
        """The same pairs with `fn` applied to each tensor (e.g. a micro-batch's slice, on its device)."""
        return replace(self, sigma=fn(self.sigma), sigma_next=fn(self.sigma_next), weight=fn(self.weight))


@dataclass(frozen=True, kw_only=True)
class Recipe(ABC):
    """What every recipe sets; every schedule is a pure function of the global step. The defaults are
    consistency training's: a ConsistencyFunction sampled on σ lists."""

    name: str
    description: str  # one line, shown by `cmzoo recipes`
    distance: str
    lr: float
    batch_size: int
    sample_ema: float
    optimizer: Literal["radam", "adam"] = "radam"
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0  # steps of linear learning-rate warm-up (at most a tenth of the run)
    boundary_scale: float | None = None  # c_skip, c_out at σ_min + s(σ − σ_min) (parameterization.py); None: unset
    p_mean: float = -1.1  # the lognormal density of σ (iCT's σ-index, ECT's t)
    p_std: float = 2.0
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    requires: tuple[str, ...] = ()  # backbone capabilities (cmzoo.Capabilities fields) the recipe needs
    distances: tuple[str, ...] | None = None  # the distances its loss compares with; None: any
    plugin: str = ""  # filled in by the registry: the plugin that registered the recipe

    @abstractmethod
    def pairs(self, k: int, total_steps: int, batch: int, generator: torch.Generator | None) -> SigmaPairs:
        """The σ pairs, weights and target-EMA rate of one batch at global step k of K."""

    @abstractmethod
    def summary(self, distance: str | None = None) -> str:
        """One line for the start of a run; `distance` is the run's, when it overrides the recipe's."""

    @abstractmethod
    def schedule_text(self, schedule: Mapping[str, float]) -> str:
        """Where the curriculum is (a step's `SigmaPairs.schedule`), for the progress bar: 'N 7', 'stage 2'."""

    def loss(self, online: ConsistencyFunction, target: ConsistencyFunction, x0: Tensor, pairs: SigmaPairs,
             noise: Tensor, distance: Distance, labels: Tensor | None = None) -> Tensor:
        """The loss of one (micro-)batch: the consistency loss (CM eq. 10) of the pairs."""
        return consistency_loss(online, target, x0, pairs.sigma, pairs.sigma_next, noise, pairs.weight, distance,
                                labels)

    def fresh_optimizer(self, k: int, total_steps: int) -> bool:
        """Whether step k starts a phase with a fresh optimizer state."""
        return False

    def model(self, net: nn.Module, function_output: bool, boundary_scale: float = 1.0) -> nn.Module:
        """The trained model around backbone `net` (a function backbone when `function_output`)."""
        return ConsistencyFunction(net, boundary_scale=boundary_scale)

    def denoiser(self, model: nn.Module) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
        """The model as a one-step denoiser (x₀ + σz, σ, labels) → x₀, for the denoising distance."""
        return model

    def schedule(self, steps: int | Sequence[float]) -> list[float]:
        """Where each sampling step starts: n steps, or the user's explicit values, checked."""
        return sigma_schedule(steps)

    def sample(self, model: nn.Module, noise: Tensor, schedule: Sequence[float], labels: Tensor | None = None,
               generator: torch.Generator | None = None, *, sizes: Sequence[Size],
               function_output: bool) -> tuple[dict[Size, Tensor], object]:
        """Unclamped samples from `noise` at each size (other sizes need `function_output`), and the image
        functions they were rendered from (None for pixel backbones)."""
        if function_output:
            return sample_at_sizes(model, noise, schedule, labels, generator, sizes=sizes)
        return {tuple(noise.shape[-2:]): multistep_sample(model, noise, schedule, labels, generator)}, None


@dataclass(frozen=True, kw_only=True)
class GridRecipe(Recipe):
    """σ pairs (σ_i, σ_{i+1}) of a Karras grid of N(k) points: CM's consistency training and iCT."""

    curriculum: Literal["ct", "ict"]  # N(k): CM's gradual growth, or iCT's doubling
    s0: int
    s1: int
    mu0: float | None  # target EMA μ₀ of the ct schedule; None: μ = 0 (target = stop-grad online)
    index_sampling: Literal["uniform", "lognormal"]
    weighting: Literal["uniform", "ict"]  # λ = 1, or λ = 1/(σ_{i+1} − σ_i)
    rho: float = RHO

    def num_scales(self, k: int, total_steps: int) -> int:
        """N(k): the number of grid points at global step k of K."""
        fn = schedules.ct_num_scales if self.curriculum == "ct" else schedules.ict_num_scales
        return fn(k, total_steps, self.s0, self.s1)

    def target_ema(self, num_scales: int) -> float:
        """μ(k) for the target network θ⁻."""
        return 0.0 if self.mu0 is None else schedules.ct_target_ema(num_scales, self.s0, self.mu0)

    def sigmas(self, num_scales: int) -> Tensor:
        return schedules.karras_sigmas(num_scales, self.sigma_min, self.sigma_max, self.rho)

    def sample_indices(self, sigmas: Tensor, batch: int, generator: torch.Generator | None) -> Tensor:
        """Interval indices i (pairs σ_i, σ_{i+1}) for one batch."""
        if self.index_sampling == "uniform":
            return schedules.sample_uniform_indices(len(sigmas), batch, generator)
        return schedules.sample_lognormal_indices(sigmas, batch, generator, self.p_mean, self.p_std)

    def weight(self, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        """λ for each pair."""
        return torch.ones_like(sigma) if self.weighting == "uniform" else schedules.ict_weight(sigma, sigma_next)

    def pairs(self, k: int, total_steps: int, batch: int, generator: torch.Generator | None) -> SigmaPairs:
        num_scales = self.num_scales(k, total_steps)
        sigmas = self.sigmas(num_scales)
        i = self.sample_indices(sigmas, batch, generator)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        return SigmaPairs(sigma, sigma_next, self.weight(sigma, sigma_next), self.target_ema(num_scales),
                          {"num_scales": num_scales})

    def summary(self, distance: str | None = None) -> str:
        n0, n1 = self.num_scales(0, 1), self.num_scales(1, 1)
        mu = "μ = 0" if self.mu0 is None else f"μ {self.target_ema(n0):.4g} → {self.target_ema(n1):.5g}"
        return (f"recipe {self.name}: N {n0} → {n1}, {mu}, {distance or self.distance}, {self.index_sampling} "
                f"σ-index ({self.description})")

    def schedule_text(self, schedule: Mapping[str, float]) -> str:
        return f"N {schedule['num_scales']}"


@dataclass(frozen=True, kw_only=True)
class EasyConsistencyTuning(Recipe):
    """ECT: a denoiser phase (EDM loss), then `stages` stages of consistency tuning on continuous pairs
    t > r with r = t(1 − q^{−(s+1)}(1 + k·sigmoid(−b·t))), 1/(t − r) weights and μ = 0."""

    denoise_fraction: float  # the share of the steps that trains the denoiser
    stages: int
    q: float = 2.0
    ect_k: float = 8.0  # k and b of the t → r mapping
    ect_b: float = 1.0
    denoise_p_mean: float = -1.2  # the EDM training density of σ
    denoise_p_std: float = 1.2

    def stage(self, k: int, total_steps: int) -> int | None:
        """The stage at step k, None during the denoiser phase."""
        return schedules.ect_stage(k, total_steps, self.denoise_steps(total_steps), self.stages)

    def denoise_steps(self, total_steps: int) -> int:
        return round(self.denoise_fraction * total_steps)

    def pairs(self, k: int, total_steps: int, batch: int, generator: torch.Generator | None) -> SigmaPairs:
        stage = self.stage(k, total_steps)
        if stage is None:
            t = schedules.sample_lognormal_sigmas(batch, self.denoise_p_mean, self.denoise_p_std, generator)
            t = t.clamp(self.sigma_min, self.sigma_max)
            return SigmaPairs(torch.full_like(t, self.sigma_min), t, schedules.edm_weight(t), 0.0, {"stage": -1},
                              denoise=True)
        t = schedules.sample_lognormal_sigmas(batch, self.p_mean, self.p_std, generator)
        # The reference's r = 0 is cmzoo's σ_min (the boundary of f), so the target is f(x₀ + σ_min z, σ_min)
        # = x₀ + σ_min·z and the weight 1/(t − σ_min). t must then exceed σ_min for a positive Δt:
        # t ≥ 2σ_min keeps 1/Δt ≤ 1/σ_min. No upper clamp, as the reference (t > σ_max in 0.3 % of draws).
        t = t.clamp(min=2 * self.sigma_min)
        r = schedules.ect_r(t, stage, self.q, self.ect_k, self.ect_b).clamp(min=self.sigma_min)
        return SigmaPairs(r, t, schedules.ict_weight(r, t), 0.0, {"stage": stage})

    def loss(self, online: ConsistencyFunction, target: ConsistencyFunction, x0: Tensor, pairs: SigmaPairs,
             noise: Tensor, distance: Distance, labels: Tensor | None = None) -> Tensor:
        """The denoiser phase's EDM loss (l2, whatever the run's distance), then the consistency loss."""
        if pairs.denoise:
            return denoising_loss(online, x0, pairs.sigma_next, noise, pairs.weight, l2, labels)
        return super().loss(online, target, x0, pairs, noise, distance, labels)

    def fresh_optimizer(self, k: int, total_steps: int) -> bool:
        """Consistency tuning starts with a fresh optimizer state: its gradients are an order of magnitude
        larger than the denoiser's (the reference tunes with a new optimizer; Adam's second moment from
        the denoiser would make its first steps far too large)."""
        return 0 < k == self.denoise_steps(total_steps)

    def summary(self, distance: str | None = None) -> str:
        return (f"recipe {self.name}: denoiser (EDM loss) for {self.denoise_fraction:.0%} of the steps, then "
                f"a fresh optimizer state and {self.stages} stages of Δt/t halving, μ = 0, "
                f"{distance or self.distance}, 1/Δt weights ({self.description})")

    def schedule_text(self, schedule: Mapping[str, float]) -> str:
        return "denoiser" if schedule["stage"] < 0 else f"stage {schedule['stage']}"


@dataclass(frozen=True, kw_only=True)
class MeanFlow(Recipe):
    """MeanFlow: the average velocity u(z_t, r, t) on (t, r) pairs drawn logit-normal, `average_fraction` of
    them with r < t and the rest flow matching (r = t), with adaptive weights 1/(‖Δ‖² + c)^p. θ⁻ is
    θ's stop-gradient (μ = 0), which computes the JVP (engine/meanflow.py)."""

    requires: tuple[str, ...] = ("second_time_input",)
    distances: tuple[str, ...] | None = ("l2",)  # the loss is MeanFlow's own weighted squared error
    p_mean: float = -0.4  # the logit-normal density of t and r (the reference's ImageNet setting)
    p_std: float = 1.0
    average_fraction: float = 0.25
    weight_power: float = 1.0  # p and c of the adaptive weight
    weight_c: float = 1e-3
    pixel_prediction: Literal["velocity", "image"] = "velocity"  # function backbones always predict the image
    # Times enter the noise embeddings unscaled: at 1000·t (DiT's 0…1000 scale) ∂u/∂t inside the JVP
    # target is 1000 times larger, and the tiny DiT's one-step velocity blew up from rms 1.3 to 98 within
    # 2,720 steps where at 1·t it stayed at 1.1; sCM (Lu & Song 2024) conditions on t rather than 1000·t.
    time_scale: float = 1.0

    def pairs(self, k: int, total_steps: int, batch: int, generator: torch.Generator | None) -> SigmaPairs:
        t, r = sample_times(batch, self.p_mean, self.p_std, self.average_fraction, generator)
        return SigmaPairs(r, t, torch.ones_like(t), 0.0, {})

    def loss(self, online: nn.Module, target: nn.Module, x0: Tensor, pairs: SigmaPairs, noise: Tensor,
             distance: Distance, labels: Tensor | None = None) -> Tensor:
        return meanflow_loss(online, target, x0, pairs.sigma_next, pairs.sigma, noise, labels, self.weight_power,
                             self.weight_c)

    def model(self, net: nn.Module, function_output: bool, boundary_scale: float = 1.0) -> AverageVelocity:
        """Function backbones predict the clean image, pixel backbones `pixel_prediction` (AverageVelocity says why)."""
        return AverageVelocity(net, "image" if function_output else self.pixel_prediction, self.time_scale)

    def denoiser(self, model: AverageVelocity) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
        return model.denoise

    def schedule(self, steps: int | Sequence[float]) -> list[float]:
        return time_schedule(steps)

    def sample(self, model: AverageVelocity, noise: Tensor, schedule: Sequence[float], labels: Tensor | None = None,
               generator: torch.Generator | None = None, *, sizes: Sequence[Size],
               function_output: bool) -> tuple[dict[Size, Tensor], object]:
        if function_output:
            return meanflow_sample_at_sizes(model, noise, schedule, labels, generator, sizes=sizes)
        return {tuple(noise.shape[-2:]): meanflow_sample(model, noise, schedule, labels, generator)}, None

    def summary(self, distance: str | None = None) -> str:
        return (f"recipe {self.name}: (t, r) logit-normal({self.p_mean:g}, {self.p_std:g}), "
                f"{self.average_fraction:.0%} with r < t, JVP target, adaptive weights p = {self.weight_power:g}, "
                f"c = {self.weight_c:g}, times × {self.time_scale:g} into the noise embeddings, pixel backbones predict "
                f"the {self.pixel_prediction} ({self.description})")

    def schedule_text(self, schedule: Mapping[str, float]) -> str:
        return ""


RECIPES: dict[str, Recipe] = {
    "ct": GridRecipe(
        name="ct", description="the paper's consistency training (CM App. C)",
        curriculum="ct", s0=2, s1=150, mu0=0.9, index_sampling="uniform", weighting="uniform",
        distance="lpips", lr=5e-4, batch_size=32, sample_ema=0.9999,
    ),
    "ict": GridRecipe(
        name="ict", description="improved consistency training (Song & Dhariwal 2023)",
        curriculum="ict", s0=10, s1=1280, mu0=None, index_sampling="lognormal", weighting="ict",
        distance="pseudo_huber", lr=1e-4, batch_size=32, sample_ema=0.9999,
    ),
    "ct-short": GridRecipe(
        name="ct-short", description="a short CPU curriculum: s₁ = 6 instead of the paper's 150",
        curriculum="ct", s0=2, s1=6, mu0=0.9, index_sampling="uniform", weighting="uniform",
        distance="pseudo_huber", lr=1e-3, batch_size=32, sample_ema=0.995,
    ),
    "ict-short": GridRecipe(
        name="ict-short", description="iCT for short runs: N = 11 throughout, Adam β₂ 0.995 with lr warm-up",
        curriculum="ict", s0=10, s1=10, mu0=None, index_sampling="lognormal", weighting="ict",
        distance="pseudo_huber", lr=1e-3, batch_size=32, sample_ema=0.999, optimizer="adam", betas=(0.9, 0.995),
        warmup=1000,
    ),
    "ect": EasyConsistencyTuning(
        name="ect", description="easy consistency tuning (Geng et al. 2024)",
        # A short sample EMA for runs of a few hundred steps: at 0.995 the weights it starts from would
        # still count 22 % after 300 steps (CPU default, one seed: FID 163 at 0.995, 150 at 0.98, 188 at 0.9).
        # Two stages (Δt down to t/4, not t/16): on the CPU default FID 135 / 141 against 165 / 177 with
        # four (seeds 0 / 1); func's longer CelebA run collapsed to one face in stages 3 and 4.
        distance="pseudo_huber", lr=1e-3, batch_size=32, sample_ema=0.98, optimizer="adam",
        denoise_fraction=0.4, stages=2,
    ),
    "meanflow": MeanFlow(
        name="meanflow", description="MeanFlow: one-step generation by average velocities (Geng et al. 2025)",
        # The paper's Adam (β₂ 0.95) at CPU settings: lr 1e-3 for runs of hundreds of steps and ECT's short
        # sample EMA (the paper: lr 1e-4, batch 256, EMA 0.9999 over hundreds of thousands of steps).
        distance="l2", lr=1e-3, batch_size=32, sample_ema=0.98, optimizer="adam", betas=(0.9, 0.95),
    ),
}
RECIPES["meanflow-x"] = replace(
    RECIPES["meanflow"], name="meanflow-x", pixel_prediction="image",
    description="MeanFlow with pixel backbones predicting the clean image (pixel MeanFlow's x-prediction)")
