"""MeanFlow (Geng et al. 2025, arXiv 2505.13447): a network of the average velocity
u(z_t, r, t) = (z_t − z_r)/(t − r) along the linear path z_t = (1 − t)x + tε (t = 0 data, t = 1 noise),
trained on the MeanFlow identity u = v − (t − r)·du/dt, where du/dt is the total derivative along the
path, a Jacobian-vector product. One step from noise: x = z₁ − u(z₁, 0, 1).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Sequence

import torch
from torch import nn
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from cmzoo.engine.loss import RandomState
from cmzoo.engine.parameterization import append_dims
from cmzoo.engine.sampling import Size
from cmzoo.errors import ConfigError

Tensor = torch.Tensor
# The image parameterisation divides by t: below this the division is clamped, as JiT clips its
# velocity's denominator at 0.05 (Li & He 2025), so that a small t cannot blow u up.
MIN_TIME = 0.05


# ---- formulas --------------------------------------------------------------------------------------------


def linear_path(x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """z_t = (1 − t)·x + t·ε, t broadcast over the image."""
    t = append_dims(t, x.ndim)
    return (1 - t) * x + t * noise


def path_velocity(x: Tensor, noise: Tensor) -> Tensor:
    """v = dz_t/dt = ε − x, the conditional velocity of the linear path."""
    return noise - x


def meanflow_target(v: Tensor, dudt: Tensor, t: Tensor, r: Tensor) -> Tensor:
    """u_tgt = v − (t − r)·du/dt (MeanFlow eq. 6); at r = t it is v, flow matching's target."""
    return v - append_dims(t - r, v.ndim) * dudt


def adaptive_weight(squared_error: Tensor, power: float = 1.0, c: float = 1e-3) -> Tensor:
    """w = 1/(‖Δ‖² + c)^p of each sample's squared error (MeanFlow §4.2); the caller passes it detached (sg)."""
    return (squared_error + c).pow(-power)


def velocity_from_image(z: Tensor, x_hat: Tensor, t: Tensor) -> Tensor:
    """u(z_t, r, t) = (z_t − x̂)/t for a predicted clean image x̂, the same for every r.

    With ε̂ = (z_t − (1 − t)x̂)/t the noise that x̂ implies, the path gives z_r = (1 − r)x̂ + rε̂, so
    u = (z_t − z_r)/(t − r) = ε̂ − x̂ = (z_t − x̂)/t: r enters only through the network's conditioning,
    and a step z_r = z_t − (t − r)u = (r/t)z_t + (1 − r/t)x̂ moves straight towards x̂.
    """
    return (z - x_hat) / append_dims(t.clamp(min=MIN_TIME), z.ndim)


def sample_logit_normal(batch: int, p_mean: float, p_std: float, generator: torch.Generator | None = None) -> Tensor:
    """t = sigmoid(P_mean + P_std·n), n ~ N(0, 1)."""
    return torch.sigmoid(p_mean + p_std * torch.randn(batch, generator=generator))


def sample_times(batch: int, p_mean: float = -0.4, p_std: float = 1.0, average_fraction: float = 0.25,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(t, r): two logit-normal draws ordered t ≥ r, then r = t except for `average_fraction` of the batch
    (MeanFlow §4.3: the r = t samples train flow matching, the others the average velocity)."""
    a, b = (sample_logit_normal(batch, p_mean, p_std, generator) for _ in range(2))
    average = torch.rand(batch, generator=generator) < average_fraction
    t = torch.maximum(a, b)
    return t, torch.where(average, torch.minimum(a, b), t)


# ---- the network ------------------------------------------------------------------------------------------


class AverageVelocity(nn.Module):
    """u_θ(z, r, t) around a backbone with capability ``second_time_input``: t and t − r are its two noise
    conditionings, as the reference conditions on (t, t − r). Asking for the second input adds its
    zero-initialised embedding, so the backbone starts as the one-input network it was built as.

    `predicts="velocity"`: the backbone's output is u. `predicts="image"`: it is the clean image x̂ and
    u = (z − x̂)/t (`velocity_from_image`), as pixel MeanFlow: a velocity holds the noise itself, which a
    smooth image function cannot represent, while x̂ is an image.
    """

    def __init__(self, net: nn.Module, predicts: Literal["velocity", "image"], time_scale: float) -> None:
        super().__init__()
        net.add_second_time_input()
        self.net = net
        self.predicts = predicts
        self.time_scale = time_scale  # the noise embeddings see time_scale·t and time_scale·(t − r)

    def forward(self, z: Tensor, r: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        out = self.net(z, self.time_scale * t, labels, c_noise_2=self.time_scale * (t - r))
        return out if self.predicts == "velocity" else velocity_from_image(z, out, t)

    def image_function(self, z: Tensor, r: Tensor, t: Tensor, labels: Tensor | None = None):
        """x̂ as the backbone's image function (a function backbone under `predicts="image"`)."""
        return self.net.predict_function(z, self.time_scale * t, labels, c_noise_2=self.time_scale * (t - r))

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        """One step to the clean image from x = x₀ + σε, a consistency model's noise level: the path holds
        z_t = x/(1 + σ) at t = σ/(1 + σ), and z_t − t·u(z_t, 0, t) is its end at t = 0."""
        t = sigma / (1 + sigma)
        z = x / append_dims(1 + sigma, x.ndim)
        return z - append_dims(t, x.ndim) * self(z, torch.zeros_like(t), t, labels)


# ---- the loss ---------------------------------------------------------------------------------------------


def total_derivative(model: nn.Module, z: Tensor, r: Tensor, t: Tensor, v: Tensor,
                     labels: Tensor | None = None) -> Tensor:
    """du/dt = v·∂u/∂z + ∂u/∂t: the JVP of u(z, r, t) with tangents (v, 0, 1) (MeanFlow eq. 8). In fp32,
    without a graph (it only builds the stop-gradient target), and through SDPA's math kernel: the fused
    attention kernels have no forward-mode derivative."""
    primals = (z.float(), r.float(), t.float())
    tangents = (v.float(), torch.zeros_like(primals[1]), torch.ones_like(primals[2]))
    with (torch.no_grad(), torch.autocast(z.device.type, enabled=False), sdpa_kernel(SDPBackend.MATH),
          warnings.catch_warnings()):
        # Forward AD scripts torch's own JVP decompositions on first use, which torch reports as a
        # deprecation of torch.jit.script: torch's to change, nothing the user can act on.
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        return jvp(lambda z_, r_, t_: model(z_, r_, t_, labels), primals, tangents)[1]


def meanflow_loss(online: nn.Module, target: nn.Module, x: Tensor, t: Tensor, r: Tensor, noise: Tensor,
                  labels: Tensor | None = None, power: float = 1.0, c: float = 1e-3) -> Tensor:
    """mean_b w_b·‖u_θ(z_t, r, t) − sg(u_tgt)‖² with w = sg(1/(‖Δ‖² + c)^p) (MeanFlow eq. 9 and §4.2).

    The JVP runs on `target` (θ⁻), which the recipe's μ = 0 keeps equal to θ: it is θ's stop-gradient
    and never DDP-wrapped, so forward-mode AD cannot bypass DDP's gradient hooks, and the one forward that
    carries gradients is `online`'s, through the wrapper. Both forwards draw the same dropout masks and
    coordinate noise.
    """
    z, v = linear_path(x, noise, t), path_velocity(x, noise)
    randomness = RandomState(x.device)
    u = online(z, r, t, labels)
    with randomness.replay():
        u_tgt = meanflow_target(v.float(), total_derivative(target, z, r, t, v, labels), t, r)
    squared_error = (u.float() - u_tgt).pow(2).flatten(1).sum(1)
    return (adaptive_weight(squared_error.detach(), power, c) * squared_error).mean()


# ---- sampling ---------------------------------------------------------------------------------------------


def time_schedule(steps: int | Sequence[float]) -> list[float]:
    """The times each step starts from: n steps are 1, (n − 1)/n, …, 1/n; an explicit list must start at
    1 (pure noise) and decrease strictly within (0, 1]. Each step goes to the next time, the last to 0."""
    if isinstance(steps, int):
        if steps < 1:
            raise ConfigError(f"--steps must be ≥ 1, got {steps}")
        return [1 - i / steps for i in range(steps)]
    times = [float(s) for s in steps]
    ordered = all(math.isfinite(s) for s in times) and all(b < a for a, b in zip(times, times[1:]))
    if not times or times[0] != 1 or not ordered or times[-1] <= 0:
        raise ConfigError(f"MeanFlow sampling times must start at 1 and decrease strictly within (0, 1], e.g. "
                          f"1 0.5; got {times}")
    return times


def meanflow_step(model: AverageVelocity, z: Tensor, t: float, r: float, labels: Tensor | None = None) -> Tensor:
    """z_r = z_t − (t − r)·u(z_t, r, t)."""
    batch = (z.shape[0],)
    return z - (t - r) * model(z, z.new_full(batch, r), z.new_full(batch, t), labels)


def meanflow_sample(model: AverageVelocity, noise: Tensor, times: Sequence[float] = (1.0,),
                    labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """From z₁ = ε, one step from each time to the next and the last to 0: one step is z₁ − u(z₁, 0, 1)."""
    z = noise
    for t, r in zip(times, [*times[1:], 0.0]):
        z = meanflow_step(model, z, t, r, labels)
    return z


def meanflow_sample_at_sizes(model: AverageVelocity, noise: Tensor, times: Sequence[float] = (1.0,),
                             labels: Tensor | None = None, generator: torch.Generator | None = None, *,
                             sizes: Sequence[Size]) -> tuple[dict[Size, Tensor], object]:
    """Samples of a function backbone under the image parameterisation at every size in `sizes`: the earlier
    steps at the training size, then the last step's x̂, where it lands (z_t − t·(z_t − x̂)/t = x̂ for
    t ≥ MIN_TIME), as an image function rendered at each size. Returns ({(H, W): images}, the functions)."""
    z = noise
    for t, r in zip(times[:-1], times[1:]):
        z = meanflow_step(model, z, t, r, labels)
    last = z.new_full((z.shape[0],), float(times[-1]))
    fn = model.image_function(z, torch.zeros_like(last), last, labels)
    return {(h, w): fn.render(h, w) for h, w in sizes}, fn
