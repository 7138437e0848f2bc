"""An isotropic ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s", §3 isotropic variant) as a
consistency-model backbone: patchify → timm ``ConvNeXtBlock``s, each fed a FiLM-modulated input
from the noise (+ label) embedding → zero-initialised head → pixel shuffle back to the image size.

The ConvNeXt blocks are timm's own (``timm.models.convnext.ConvNeXtBlock``), built from scratch — no
pretrained weights are read or downloaded. timm's block takes no condition, so each one is wrapped:
the condition enters as a per-channel scale and shift of the block's input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from timm.models.convnext import ConvNeXtBlock
from torch import nn

from cmzoo.layers import NoiseEmbedder, checked_patch_size

if TYPE_CHECKING:
    from cmzoo_convnext import ConvNeXtConfig

# ---- one conditioned block -----------------------------------------------------------------------


class FiLMConvNeXtBlock(nn.Module):
    """timm's ConvNeXt block on x·(1 + scale(c)) + shift(c); scale and shift start at zero."""

    def __init__(self, config: ConvNeXtConfig) -> None:
        super().__init__()
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(config.dim, 2 * config.dim))
        self.block = ConvNeXtBlock(config.dim, kernel_size=config.kernel_size, mlp_ratio=config.mlp_ratio,
                                   ls_init_value=config.ls_init_value, drop_path=config.drop_path)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)  # (B, D, 1, 1) each
        return self.block(x * (1 + scale) + shift)  # (B, D, h, w)


# ---- the network ---------------------------------------------------------------------------------


class ConvNeXtDenoiser(nn.Module):
    """F_θ(x_in, c_noise, labels) → (B, C, H, W); the untrained output is exactly 0 (zero head)."""

    def __init__(self, config: ConvNeXtConfig, resolution: int, channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        # The one place the patch size is derived from the config, and checked against the resolution.
        self.patch_size = p = checked_patch_size("convnext", resolution, config.patch_size)
        self.stem = nn.Sequential(nn.Conv2d(channels, config.dim, p, stride=p), LayerNorm2d(config.dim))
        self.noise_embedder = NoiseEmbedder(config.dim)  # c_noise → sinusoidal features → MLP, as DiT
        self.label_embedder = nn.Embedding(num_classes, config.dim) if num_classes else None
        self.blocks = nn.ModuleList(FiLMConvNeXtBlock(config) for _ in range(config.depth))
        self.head = nn.Sequential(LayerNorm2d(config.dim), nn.Conv2d(config.dim, p * p * channels, 1))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # timm initialises its blocks (trunc-normal convs, layer scale ls_init_value). Embeddings get
        # N(0, 0.02) as in DiT. FiLM starts at zero, so every block starts unconditioned; the head
        # starts at zero, so F_θ ≡ 0 before training (capability zero_init_output) and f_θ = c_skip·x.
        for embedder in (self.noise_embedder.mlp[0], self.noise_embedder.mlp[2], self.label_embedder):
            if embedder is not None:
                nn.init.normal_(embedder.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.film[-1].weight)
            nn.init.zeros_(block.film[-1].bias)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c = self.noise_embedder(c_noise)  # (B, D)
        if self.label_embedder is not None and labels is not None:
            c = c + self.label_embedder(labels)
        x = self.stem(x_in)  # (B, D, H/p, W/p)
        for block in self.blocks:
            x = block(x, c)
        return F.pixel_shuffle(self.head(x), self.patch_size)  # (B, p²C, H/p, W/p) → (B, C, H, W)
