"""Reconstruction pre-training (paper §3.4, eq. 10; DESIGN §5): learn clean image → its image function.

σ = 0 and the feature extraction is skipped: the backbone's ``reconstruct(x_in)`` turns the clean
image into functions, and the loss is the MSE of their render against the image. Works with any
backbone of capability ``pretrain``; it uses nothing but ``reconstruct``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmzoo.engine.parameterization import c_in


def reconstruct(module: nn.Module, x: torch.Tensor):
    """The image functions of clean images x (B, C, H, W) in [-1, 1]: ``module.reconstruct(c_in(0)·x)``.

    The input is scaled as the network input at σ = 0, so the patch tokens seen here have the same
    statistics (unit variance) as c_in(σ)·x in consistency training.
    """
    return module.reconstruct(c_in(x.new_zeros(())) * x)


def reconstruction_loss(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """L_rec = MSE(M_{G_θ(x, σ=0)}({c}), x) (paper eq. 10); variational coordinates in training mode."""
    rendered = reconstruct(module, x).render(x.shape[-2], x.shape[-1], coords_noise=module.training)
    return F.mse_loss(rendered, x)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2): 10·log10(4 / MSE), shape (B,)."""
    mse = (a.float() - b.float()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(4.0 / mse)


def pretrain_steps(
    module: nn.Module,
    images: torch.Tensor,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Run `steps` Adam steps (paper: lr 1e-4) of reconstruction on `images` (N, C, H, W) in [-1, 1].

    Batches are drawn in epochs (a fresh permutation from `generator` each pass). The module is left
    in training mode. Returns the loss of every step.
    """
    device = next(module.parameters()).device
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    n = images.shape[0]
    batch_size = min(batch_size, n)
    order, position, losses = torch.randperm(n, generator=generator), 0, []
    for _ in range(steps):
        if position + batch_size > n:
            order, position = torch.randperm(n, generator=generator), 0
        batch = images[order[position : position + batch_size]].to(device)
        position += batch_size
        loss = reconstruction_loss(module, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
