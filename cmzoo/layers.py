"""Layers shared by the Transformer backbones (DiT, func, U-ViT): noise/label embeddings, adaLN-Zero.

Attention and MLP come from ``timm.layers`` (PyTorch SDPA fast path); only what timm lacks is here.
"""

from __future__ import annotations

import math

import torch
from timm.layers import Attention, Mlp
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of a (B,) float tensor (DDPM / DiT `TimestepEmbedder`): (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class NoiseEmbedder(nn.Module):
    """c_noise(σ) → sinusoidal features → MLP (DiT's timestep embedder)."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(c_noise, self.frequency_dim).to(self.mlp[0].weight.dtype))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation of tokens x (B, T, D) by per-sample shift and scale (B, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class AdaLNZeroBlock(nn.Module):
    """DiT block: self-attention and MLP, each gated by adaLN-Zero modulation from a condition c."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True, proj_drop=dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"), drop=dropout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class AdaLNFinalLayer(nn.Module):
    """DiT's last layer: adaLN-modulated LayerNorm, then a linear map to `out_dim` per token."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


def init_adaln_zero(module: nn.Module) -> None:
    """Zero every adaLN modulation (and final linear) so each block starts as the identity (DiT §3.2)."""
    for m in module.modules():
        if isinstance(m, (AdaLNZeroBlock, AdaLNFinalLayer)):
            nn.init.zeros_(m.adaLN_modulation[-1].weight)
            nn.init.zeros_(m.adaLN_modulation[-1].bias)
        if isinstance(m, AdaLNFinalLayer):
            nn.init.zeros_(m.linear.weight)
            nn.init.zeros_(m.linear.bias)


def init_transformer_weights(module: nn.Module) -> None:
    """Xavier-uniform linear layers with zero bias (the DiT / ViT convention)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_dit_embeddings(x_embedder: nn.Module, t_embedder: NoiseEmbedder, y_embedder: nn.Embedding | None) -> None:
    """DiT's embedding init: the patch projection like a linear layer, N(0, 0.02) noise/label embeddings."""
    w = x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(x_embedder.proj.bias)
    nn.init.normal_(t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(t_embedder.mlp[2].weight, std=0.02)
    if y_embedder is not None:
        nn.init.normal_(y_embedder.weight, std=0.02)


def paper_patch_size(resolution: int) -> int:
    """The paper's patch size for every Transformer backbone: 4 at 32 and 64 px, 8 at 128 px."""
    return 4 if resolution <= 64 else 8


def checked_patch_size(backbone: str, resolution: int, patch_size: int | None) -> int:
    """`patch_size` (None: the paper's rule), checked to divide `resolution`."""
    from cmzoo.errors import ConfigError

    p = paper_patch_size(resolution) if patch_size is None else patch_size
    if resolution % p:
        raise ConfigError(
            f"backbone {backbone!r}: resolution {resolution} is not divisible by patch_size {p}; "
            f"use a resolution that is a multiple of {p} or set patch_size"
        )
    return p
