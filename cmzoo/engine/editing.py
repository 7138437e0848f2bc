"""What zero-shot editing (CM Algorithm 4) imposes, and spherical interpolation of noise.

Ω is 1 where pixels are generated and lives in the domain of an invertible linear transform A: the
identity for inpainting, an orthogonal per-patch transform whose first component is the patch mean
for super-resolution. The editing samplers (`cmzoo.engine.sampling`) impose the known part
A⁻¹[(A y)(1 − Ω) + (A x)Ω] after every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class LinearTransform:
    """An invertible linear map A of images and its inverse A⁻¹."""

    forward: Callable[[Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


INPAINTING = LinearTransform(_identity, _identity)


@lru_cache(maxsize=None)
def patch_mean_basis(patch: int) -> Tensor:
    """An orthonormal basis Q (p², p²) of a p×p patch whose first column is the constant 1/p (float64)."""
    m = torch.eye(patch * patch, dtype=torch.float64)
    m[:, 0] = 1.0 / patch
    q, r = torch.linalg.qr(m)
    return q * r[0, 0].sign()  # QR fixes column 0 only up to sign; make it +1/p


def to_patches(x: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) → (B, C, H/p, W/p, p²): each p×p patch flattened row-major."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // patch, patch, w // patch, patch).transpose(3, 4).reshape(b, c, h // patch, w // patch, -1)


def from_patches(t: Tensor, patch: int) -> Tensor:
    """The inverse of `to_patches`."""
    b, c, hp, wp, _ = t.shape
    return t.reshape(b, c, hp, wp, patch, patch).transpose(3, 4).reshape(b, c, hp * patch, wp * patch)


def superres_transform(patch: int) -> LinearTransform:
    """A: the coefficients of every p×p patch in `patch_mean_basis` (component 0 = p · patch mean)."""

    def forward(x: Tensor) -> Tensor:
        return to_patches(x, patch) @ patch_mean_basis(patch).to(x)

    def inverse(a: Tensor) -> Tensor:
        return from_patches(a @ patch_mean_basis(patch).to(a).T, patch)

    return LinearTransform(forward, inverse)


def superres_mask(patch: int) -> Tensor:
    """Ω for super-resolution in the domain of `superres_transform`: generate all but each patch mean."""
    omega = torch.ones(patch * patch)
    omega[0] = 0.0
    return omega


def impose(reference: Tensor, x: Tensor, mask: Tensor, transform: LinearTransform = INPAINTING) -> Tensor:
    """A⁻¹[(A y)(1 − Ω) + (A x)Ω]: x with the known part of the reference y."""
    return transform.inverse(transform.forward(reference) * (1 - mask) + transform.forward(x) * mask)


def known_part(reference: Tensor, mask: Tensor, transform: LinearTransform = INPAINTING) -> Tensor:
    """y ← A⁻¹[(A y)(1 − Ω)]: the reference with what is to be generated set to 0."""
    return impose(reference, torch.zeros_like(reference), mask, transform)


def slerp(z0: Tensor, z1: Tensor, t: float) -> Tensor:
    """Spherical interpolation from z0 (t = 0) to z1 (t = 1) of each batch item, over its other dims.

    Items at an angle below 1e-6 rad are interpolated linearly; antipodal items have no unique arc.
    """
    a, b = z0.flatten(1).double(), z1.flatten(1).double()
    theta = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).clamp(-1, 1).acos()
    parallel = theta < 1e-6
    sin = torch.where(parallel, 1.0, theta.sin())
    w0 = torch.where(parallel, 1 - t, ((1 - t) * theta).sin() / sin)
    w1 = torch.where(parallel, t, (t * theta).sin() / sin)
    shape = (-1,) + (1,) * (z0.ndim - 1)
    return (w0.reshape(shape) * z0.double() + w1.reshape(shape) * z1.double()).to(z0.dtype)


def slerp_frames(z0: Tensor, z1: Tensor, frames: int) -> Tensor:
    """`frames` evenly spaced points of `slerp` from z0 to z1 (1, …) both ends included: (frames, …)."""
    return torch.cat([slerp(z0, z1, t) for t in torch.linspace(0, 1, frames).tolist()])
