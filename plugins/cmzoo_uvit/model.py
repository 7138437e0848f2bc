"""U-ViT (Bao et al. 2023, "All are Worth Words") as a consistency-model backbone.

Everything is a token: the noise level c_noise (and the class label) join the patch tokens, a plain
pre-norm ViT runs over them, and long skips connect each in-block to its mirrored out-block.
"""

from __future__ import annotations

import torch
from einops import rearrange
from timm.layers import Attention, Mlp, PatchEmbed, trunc_normal_
from torch import nn

from cmzoo.layers import timestep_embedding

#################################################################################
#                                     Block                                     #
#################################################################################


class UViTBlock(nn.Module):
    """Pre-norm Transformer block; an out-block first fuses its long skip: Linear(concat(x, skip))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, long_skip: bool) -> None:
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if long_skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (B, T, 2D) -> (B, T, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


#################################################################################
#                                     U-ViT                                     #
#################################################################################


class UViT(nn.Module):
    """F_θ(x_in, c_noise, labels) → (B, C, H, W); extra tokens [label,] noise, then the patches."""

    def __init__(
        self,
        resolution: int,
        channels: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        final_conv: bool = True,
        long_skips: bool = True,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.patch_size = patch_size
        self.grid = resolution // patch_size
        self.dim = dim
        self.patch_embed = PatchEmbed(resolution, patch_size, channels, dim)
        self.label_emb = nn.Embedding(num_classes, dim) if num_classes else None
        self.extras = 2 if num_classes else 1  # label token (class-conditional) + noise token
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + self.grid**2, dim))
        n = depth // 2  # depth = n in-blocks + 1 mid block + n out-blocks
        self.in_blocks = nn.ModuleList(UViTBlock(dim, num_heads, mlp_ratio, qkv_bias, False) for _ in range(n))
        self.mid_block = UViTBlock(dim, num_heads, mlp_ratio, qkv_bias, False)
        self.out_blocks = nn.ModuleList(UViTBlock(dim, num_heads, mlp_ratio, qkv_bias, long_skips) for _ in range(n))
        self.norm = nn.LayerNorm(dim)
        self.decoder_pred = nn.Linear(dim, patch_size * patch_size * channels)
        # A 3×3 conv after unpatchify smooths the seams between patches (U-ViT §3.1).
        self.final_layer = nn.Conv2d(channels, channels, 3, padding=1) if final_conv else nn.Identity()
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # As the reference: truncated N(0, 0.02) for the positions and every linear weight, zero biases,
        # unit LayerNorms. The convolutions (patch projection, final 3×3) and the label table keep
        # PyTorch's defaults, so F_θ is not zero at init.
        trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_embed(x_in)  # (B, T, D), T = grid²
        # The noise level is a token: sinusoidal features of c_noise, no MLP (as the reference).
        extra = [timestep_embedding(c_noise, self.dim).to(x.dtype)[:, None]]  # [(B, 1, D)]
        pos = self.pos_embed
        if self.label_emb is not None:
            if labels is None:
                pos = pos[:, 1:]  # no label given: drop the label token and its position
            else:
                extra.insert(0, self.label_emb(labels).to(x.dtype)[:, None])
        x = torch.cat([*extra, x], dim=1) + pos.to(x.dtype)  # (B, E + T, D)

        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())  # the last in-block feeds the first out-block

        x = self.decoder_pred(self.norm(x))[:, len(extra) :]  # (B, T, p·p·C), extra tokens dropped
        x = rearrange(
            x, "b (h w) (p q c) -> b c (h p) (w q)", h=self.grid, p=self.patch_size, q=self.patch_size, c=self.channels
        )
        return self.final_layer(x)
