"""Preconditioning of the consistency function (CM paper eq. 5 / App. C).

f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x, c_noise(σ)), with c_skip(σ_min) = 1 and
c_out(σ_min) = 0 so that the boundary condition f_θ(x, σ_min) = x holds exactly.
"""

from __future__ import annotations

import torch
from torch import nn

SIGMA_DATA = 0.5
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0


def c_skip(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """c_skip(σ) = σ_data² / ((σ − σ_min)² + σ_data²) (CM paper eq. 5 with the σ_min boundary)."""
    return sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)


def c_out(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """c_out(σ) = σ_data (σ − σ_min) / √(σ_data² + σ²) (CM paper eq. 5)."""
    return sigma_data * (sigma - sigma_min) / (sigma_data**2 + sigma**2).sqrt()


def c_in(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_in(σ) = 1 / √(σ² + σ_data²): unit variance of the network input (EDM Table 1)."""
    return (sigma**2 + sigma_data**2).rsqrt()


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """c_noise(σ) = 250·ln(σ + 1e-44), the noise conditioning of the reference CM code."""
    return 250.0 * torch.log(sigma + 1e-44)


def boundary_sigma(sigma: torch.Tensor, scale: float = 1.0, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """σ_min + s·(σ − σ_min): where c_skip and c_out are evaluated. s = 1 is the paper's; s > 1 narrows
    the boundary region, so that c_skip ≈ 0 and F predicts the clean image except near σ_min (latent
    consistency models' timestep scaling, s = 10). Both boundary conditions hold for every s."""
    return sigma_min + scale * (sigma - sigma_min)


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a (B,) tensor as (B, 1, …, 1) with `ndim` dimensions, for broadcasting over images."""
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


class ConsistencyFunction(nn.Module):
    """The preconditioning wrapper around a backbone F_θ: the only place that knows σ."""

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA, sigma_min: float = SIGMA_MIN,
                 boundary_scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data
        self.sigma_min = sigma_min
        self.boundary_scale = boundary_scale

    def scalings(self, sigma: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in) for a (B,) σ, shaped to broadcast over (B, C, H, W)."""
        sigma = append_dims(sigma, ndim)
        boundary = boundary_sigma(sigma, self.boundary_scale, self.sigma_min)
        return (
            c_skip(boundary, self.sigma_data, self.sigma_min),
            c_out(boundary, self.sigma_data, self.sigma_min),
            c_in(sigma, self.sigma_data),
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """f_θ(x, σ): the denoised image for a batch x (B, C, H, W) at noise levels σ (B,)."""
        skip, out, inp = self.scalings(sigma, x.ndim)
        return skip * x + out * self.net(inp * x, c_noise(sigma), labels)

    def predict_function(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None):
        """The backbone's image function F_θ for c_in(σ)·x (capability ``function_output``)."""
        _, _, inp = self.scalings(sigma, x.ndim)
        return self.net.predict_function(inp * x, c_noise(sigma), labels)

    def output_function(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None):
        """c_out(σ)·F_θ as an image function: rendered at x's size it is f_θ(x, σ) − c_skip(σ)·x."""
        _, out, _ = self.scalings(sigma, x.ndim)
        return self.predict_function(x, sigma, labels).scaled(out.flatten())
