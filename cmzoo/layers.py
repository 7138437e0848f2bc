"""Layers shared by the Transformer backbones (DiT, func, U-ViT): their common opening, noise/label
embeddings, adaLN-Zero.

Attention, MLP and the patch embedding come from ``timm.layers`` (PyTorch SDPA fast path); only what
timm lacks is here.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Attention, Mlp, PatchEmbed, build_sincos2d_pos_embed
from torch import nn

from cmzoo.errors import ConfigError


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


def paper_patch_size(resolution: int) -> int:
    """The paper's patch size for every Transformer backbone: 4 at 32 and 64 px, 8 at 128 px."""
    return 4 if resolution <= 64 else 8


def checked_patch_size(backbone: str, resolution: int, patch_size: int | None) -> int:
    """`patch_size` (None: the paper's rule), checked to divide `resolution`."""
    p = paper_patch_size(resolution) if patch_size is None else patch_size
    if resolution % p:
        raise ConfigError(
            f"backbone {backbone!r}: resolution {resolution} is not divisible by patch_size {p}; "
            f"use a resolution that is a multiple of {p} or set patch_size"
        )
    return p


class PatchConfig(Protocol):
    """The fields of a backbone's config that :class:`PatchTransformer` reads."""

    @property
    def dim(self) -> int: ...

    @property
    def patch_size(self) -> int | None: ...


class PatchTransformer(nn.Module):
    """Base of the patch-token Transformers (DiT, U-ViT, func): the opening they share, built once.

    It holds the patch embedding `x_embedder`, the 2-D positions `pos_embed`, the noise embedder
    `t_embedder` and, when class-conditional, the label embedding `y_embedder` (DiT's names, which
    checkpoints store); subclasses add their blocks and the way out.
    """

    def __init__(
        self,
        backbone: str,
        config: PatchConfig,
        resolution: int,
        channels: int,
        num_classes: int | None,
        *,
        learned_positions: bool,
        noise_mlp: bool = True,
        extra_tokens: int = 0,
    ) -> None:
        """`backbone` names the backbone in errors. U-ViT's options: `noise_mlp=False` leaves out
        `t_embedder` (its noise token is the bare sinusoid), and `extra_tokens` positions precede the patches'."""
        super().__init__()
        self.channels = channels
        self.patch_size = checked_patch_size(backbone, resolution, config.patch_size)
        self.grid = resolution // self.patch_size
        self.extra_tokens = extra_tokens
        self.x_embedder = PatchEmbed(resolution, self.patch_size, channels, config.dim)
        self.t_embedder = NoiseEmbedder(config.dim) if noise_mlp else None
        self.t2_embedder: NoiseEmbedder | None = None  # see add_second_time_input
        self.y_embedder = nn.Embedding(num_classes, config.dim) if num_classes else None
        # The patches' positions start at DiT's 2-D sin-cos values, the extra tokens' at zero.
        pos = F.pad(build_sincos2d_pos_embed([self.grid, self.grid], config.dim)[None], (0, 0, extra_tokens, 0))
        if learned_positions:
            self.pos_embed = nn.Parameter(pos)  # (1, E + T, D)
        else:
            self.register_buffer("pos_embed", pos, persistent=False)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens of images (B, C, H, W) plus their positions: (B, T, D), T = grid²."""
        return self.x_embedder(x) + self.pos_embed[:, self.extra_tokens :].to(x.dtype)

    def add_second_time_input(self) -> None:
        """A second noise embedding, summed into the condition; its last layer starts at zero, so the network
        computes what it did before until training moves it (capability ``second_time_input``)."""
        embedder = NoiseEmbedder(self.t_embedder.mlp[0].out_features).to(self.t_embedder.mlp[0].weight)
        nn.init.normal_(embedder.mlp[0].weight, std=0.02)
        nn.init.zeros_(embedder.mlp[0].bias)
        nn.init.zeros_(embedder.mlp[2].weight)
        nn.init.zeros_(embedder.mlp[2].bias)
        self.t2_embedder = embedder

    def condition(self, c_noise: torch.Tensor, labels: torch.Tensor | None,
                  c_noise_2: torch.Tensor | None = None) -> torch.Tensor:
        """Noise embedding (+ the second one's when given, + label embedding when class-conditional and labels
        are given): (B, D)."""
        c = self.t_embedder(c_noise)
        if c_noise_2 is not None:
            c = c + self.t2_embedder(c_noise_2)
        if self.y_embedder is not None and labels is not None:
            c = c + self.y_embedder(labels)
        return c

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch pixels (B, T, p·p·C) → images (B, C, H, W)."""
        p = self.patch_size
        return rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=self.grid, p=p, q=p, c=self.channels)

    def init_dit_weights(self) -> None:
        """DiT's initialisation of the whole model: Xavier linear layers, the patch projection like one,
        N(0, 0.02) noise/label embeddings, then adaLN-Zero so that every block starts as the identity."""
        init_transformer_weights(self)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.weight, std=0.02)
        init_adaln_zero(self)
