"""U-ViT (Bao et al. 2023, "All are Worth Words") as a consistency-model backbone.

Everything is a token: the noise level c_noise (and the class label) join the patch tokens, a plain
pre-norm ViT runs over them, and long skips connect each in-block to its mirrored out-block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from timm.layers import Attention, Mlp, trunc_normal_
from torch import nn

from cmzoo.layers import PatchTransformer, timestep_embedding

if TYPE_CHECKING:
    from cmzoo_uvit import UViTConfig

#################################################################################
#                                     Block                                     #
#################################################################################


class UViTBlock(nn.Module):
    """Pre-norm Transformer block; an out-block first fuses its long skip: Linear(concat(x, skip))."""

    def __init__(self, config: UViTConfig, long_skip: bool) -> None:
        super().__init__()
        dim = config.dim
        self.skip_linear = nn.Linear(2 * dim, dim) if long_skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=config.num_heads, qkv_bias=config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (B, T, 2D) -> (B, T, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


#################################################################################
#                                     U-ViT                                     #
#################################################################################


class UViT(PatchTransformer):
    """F_θ(x_in, c_noise, labels) → (B, C, H, W); extra tokens [label,] noise, then the patches."""

    def __init__(self, config: UViTConfig, resolution: int, channels: int, num_classes: int | None = None) -> None:
        # The label (class-conditional) and the noise level are tokens with positions of their own; the
        # noise token is sinusoidal features of c_noise, no MLP (as the reference).
        super().__init__(
            "uvit", config, resolution, channels, num_classes, learned_positions=True, noise_mlp=False,
            extra_tokens=2 if num_classes else 1,
        )
        self.dim = config.dim
        n = config.depth // 2  # depth = n in-blocks + 1 mid block + n out-blocks
        self.in_blocks = nn.ModuleList(UViTBlock(config, False) for _ in range(n))
        self.mid_block = UViTBlock(config, False)
        self.out_blocks = nn.ModuleList(UViTBlock(config, config.long_skips) for _ in range(n))
        self.norm = nn.LayerNorm(config.dim)
        self.decoder_pred = nn.Linear(config.dim, self.patch_size * self.patch_size * channels)
        # A 3×3 conv after unpatchify smooths the seams between patches (U-ViT §3.1).
        self.final_layer = nn.Conv2d(channels, channels, 3, padding=1) if config.final_conv else nn.Identity()
        self.register_load_state_dict_pre_hook(rename_old_keys)
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
        x = self.patch_tokens(x_in)  # (B, T, D), T = grid²
        extra = [timestep_embedding(c_noise, self.dim)[:, None]]  # [(B, 1, D)]
        if self.y_embedder is not None and labels is not None:
            extra.insert(0, self.y_embedder(labels)[:, None])
        # Without labels the label token and its position are left out.
        pos = self.pos_embed[:, self.extra_tokens - len(extra) : self.extra_tokens]
        x = torch.cat([torch.cat(extra, dim=1).to(x.dtype) + pos.to(x.dtype), x], dim=1)  # (B, E + T, D)

        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())  # the last in-block feeds the first out-block

        x = self.decoder_pred(self.norm(x))[:, len(extra) :]  # (B, T, p·p·C), extra tokens dropped
        return self.final_layer(self.unpatchify(x))


def rename_old_keys(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: object) -> None:
    """Load-state-dict pre-hook: U-ViT checkpoints of earlier cmzoo versions name x_embedder `patch_embed` and
    y_embedder `label_emb`; their weights load under the new names."""
    for old, new in (("patch_embed.", "x_embedder."), ("label_emb.", "y_embedder.")):
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key.removeprefix(prefix + old)] = state_dict.pop(key)
