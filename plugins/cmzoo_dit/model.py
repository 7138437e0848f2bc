"""DiT (Peebles & Xie 2023) as a consistency-model backbone: patch tokens, adaLN-Zero blocks on c_noise."""

from __future__ import annotations

import torch
from einops import rearrange
from timm.layers import PatchEmbed, build_sincos2d_pos_embed
from torch import nn

from cmzoo.layers import (
    AdaLNFinalLayer,
    AdaLNZeroBlock,
    NoiseEmbedder,
    init_adaln_zero,
    init_dit_embeddings,
    init_transformer_weights,
)


class DiT(nn.Module):
    """F_θ(x_in, c_noise, labels) → (B, C, H, W); the untrained output is exactly 0 (adaLN-Zero)."""

    def __init__(
        self,
        resolution: int,
        channels: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.patch_size = patch_size
        self.grid = resolution // patch_size
        self.x_embedder = PatchEmbed(resolution, patch_size, channels, dim)
        self.t_embedder = NoiseEmbedder(dim)
        self.y_embedder = nn.Embedding(num_classes, dim) if num_classes else None
        # Fixed 2-D sin-cos positions, as the reference DiT.
        self.register_buffer("pos_embed", build_sincos2d_pos_embed([self.grid, self.grid], dim), persistent=False)
        self.blocks = nn.ModuleList(AdaLNZeroBlock(dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.final_layer = AdaLNFinalLayer(dim, patch_size * patch_size * channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # Xavier everywhere, the patch projection like a linear layer, N(0, 0.02) embeddings, then
        # adaLN-Zero: every block and the output start at zero, so F_θ ≡ 0 before training.
        init_transformer_weights(self)
        init_dit_embeddings(self.x_embedder, self.t_embedder, self.y_embedder)
        init_adaln_zero(self)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.x_embedder(x_in) + self.pos_embed.to(x_in.dtype)  # (B, T, D), T = grid²
        c = self.t_embedder(c_noise)  # (B, D)
        if self.y_embedder is not None and labels is not None:
            c = c + self.y_embedder(labels)
        for block in self.blocks:
            x = block(x, c)
        x = self.final_layer(x, c)  # (B, T, p·p·C)
        return rearrange(
            x, "b (h w) (p q c) -> b c (h p) (w q)", h=self.grid, p=self.patch_size, q=self.patch_size, c=self.channels
        )
