"""DiT (Peebles & Xie 2023) as a consistency-model backbone: patch tokens, adaLN-Zero blocks on c_noise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cmzoo.layers import AdaLNFinalLayer, AdaLNZeroBlock, PatchTransformer

if TYPE_CHECKING:
    from cmzoo_dit import DiTConfig


class DiT(PatchTransformer):
    """F_θ(x_in, c_noise, labels) → (B, C, H, W); the untrained output is exactly 0 (adaLN-Zero)."""

    def __init__(self, config: DiTConfig, resolution: int, channels: int, num_classes: int | None = None) -> None:
        # Fixed 2-D sin-cos positions, as the reference DiT.
        super().__init__("dit", config, resolution, channels, num_classes, learned_positions=False)
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(config.dim, config.num_heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.final_layer = AdaLNFinalLayer(config.dim, self.patch_size * self.patch_size * channels)
        # adaLN-Zero also zeroes the final layer, so F_θ ≡ 0 before training.
        self.init_dit_weights()

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None,
                c_noise_2: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_tokens(x_in)  # (B, T, D), T = grid²
        c = self.condition(c_noise, labels, c_noise_2)  # (B, D)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))  # (B, T, p·p·C) → (B, C, H, W)
