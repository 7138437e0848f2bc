"""The image-function generator (paper §3.3, Fig. 4–5): noisy image → INR weights → render.

Three modules, as the paper:

1. feature extraction: patch tokens of c_in·x + learned positions → N DiT adaLN-Zero blocks
   conditioned on the noise (+ label) embedding → data tokens;
2. function prediction: learnable INR tokens (+ the noise/label embedding) → M decoder blocks
   (self-attention, cross-attention to the data tokens, MLP) → grouped INR weights (Trans-INR);
3. render: the fixed rule of :class:`INRImageFunction`, no parameters of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from timm.layers import Attention, Mlp
from torch import nn

from cmzoo.errors import BackboneError
from cmzoo.layers import AdaLNZeroBlock, PatchTransformer
from cmzoo_func.image_function import INRImageFunction, inr_layer_shapes

if TYPE_CHECKING:
    from cmzoo_func import FuncConfig

# ---------------------------------------------------------------------------------------------------
# Blocks of the function-prediction module
# ---------------------------------------------------------------------------------------------------


class CrossAttention(nn.Module):
    """Multi-head attention from query tokens (B, Tq, D) to context tokens (B, Tk, D) via SDPA."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, Tq, D = x.shape
        q = self.q(x).view(B, Tq, self.num_heads, -1).transpose(1, 2)  # (B, h, Tq, D/h)
        k, v = self.kv(context).view(B, context.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, Tq, D/h)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, Tq, D)))


class DecoderBlock(nn.Module):
    """Paper Fig. 5(b), pre-norm: self-attention over INR tokens, cross-attention to data tokens, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True, proj_drop=dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.norm_context = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = CrossAttention(dim, num_heads, dropout)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"), drop=dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), self.norm_context(context))
        return x + self.mlp(self.norm3(x))


class GroupedWeights(nn.Module):
    """INR weights from weight tokens by grouping (Chen & Wang 2022).

    Layer t has a learnable base W_t of shape (d_in+1, d_out) whose last row is the bias, and
    g_t = min(n_groups, d_out) tokens. Each token → LayerNorm → Linear → d_in values; column j of the
    weight is the base column times the vector of token j mod g_t, normalised to unit L2 norm over
    d_in. The bias row is not generated.
    """

    def __init__(self, dim: int, shapes: list[tuple[int, int]], n_groups: int) -> None:
        super().__init__()
        self.shapes = shapes
        self.groups = [min(n_groups, d_out) for _, d_out in shapes]
        self.base = nn.ParameterList(nn.Parameter(torch.empty(shape)) for shape in shapes)
        self.postfc = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, d_in_1 - 1)) for d_in_1, _ in shapes
        )

    @property
    def num_tokens(self) -> int:
        """Weight tokens consumed: Σ_t g_t (259 at the paper's INR)."""
        return sum(self.groups)

    def reset_base(self) -> None:
        # The base of each layer starts as nn.Linear's default init, as Trans-INR (`init_wb`).
        for wb, (d_in_1, d_out) in zip(self.base, self.shapes):
            layer = nn.Linear(d_in_1 - 1, d_out, device=wb.device, dtype=wb.dtype)
            with torch.no_grad():
                wb.copy_(torch.cat([layer.weight.t(), layer.bias[None]], dim=0))

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Weight tokens (B, Σ g_t, D) → per-layer weights (B, d_in+1, d_out), last row = bias."""
        B = tokens.shape[0]
        weights, start = [], 0
        for wb, postfc, g in zip(self.base, self.postfc, self.groups):
            d_out = wb.shape[1]
            scale = postfc(tokens[:, start : start + g]).transpose(1, 2)  # (B, d_in, g)
            start += g
            scale = scale.repeat(1, 1, -(-d_out // g))[:, :, :d_out]  # (B, d_in, d_out): column j ← token j mod g
            w = F.normalize(wb[:-1] * scale, dim=1)  # unit L2 norm of every column over d_in
            weights.append(torch.cat([w, wb[-1:].expand(B, 1, -1)], dim=1))
        return weights


# ---------------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------------


class FunctionGenerator(PatchTransformer):
    """F_θ(x_in, c_noise, labels) = render of G_θ(x_in, c_noise, labels) at the input's size (paper eq. 8)."""

    def __init__(self, config: FuncConfig, resolution: int, channels: int, num_classes: int | None = None) -> None:
        # -- feature extraction --------------------------------------------------------------------
        # Learned positions, for the training grid only.
        super().__init__("func", config, resolution, channels, num_classes, learned_positions=True)
        self.resolution = resolution
        self.n_freqs = config.n_freqs
        self.max_freq = config.max_freq
        self.encoder = nn.ModuleList(
            AdaLNZeroBlock(config.dim, config.num_heads, config.mlp_ratio, config.dropout)
            for _ in range(config.encoder_depth)
        )

        # -- function prediction -------------------------------------------------------------------
        shapes = inr_layer_shapes(4 * config.n_freqs, config.inr_width, config.inr_depth, channels)
        self.to_weights = GroupedWeights(config.dim, shapes, config.n_groups)
        self.inr_tokens = nn.Parameter(torch.zeros(1, self.to_weights.num_tokens, config.dim))
        self.decoder = nn.ModuleList(
            DecoderBlock(config.dim, config.num_heads, config.mlp_ratio, config.dropout)
            for _ in range(config.decoder_depth)
        )

        self.initialize_weights()

    def initialize_weights(self) -> None:
        # DiT's initialisation; the positions keep their 2-D sin-cos start so that the untrained tokens
        # already know where they are, then learn. INR tokens are N(0, 1) and bases nn.Linear's
        # default, as Trans-INR. adaLN-Zero makes every encoder block the identity at first, so the
        # data tokens then equal the patch tokens that reconstruction pre-training feeds directly.
        self.init_dit_weights()
        nn.init.normal_(self.inr_tokens, std=1.0)
        self.to_weights.reset_base()

    # -- pieces ------------------------------------------------------------------------------------

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with learned positions (B, T, D), T = (resolution / patch)²."""
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution) or x.shape[1] != self.channels:
            raise BackboneError(
                f"backbone 'func' was built for {self.channels}×{self.resolution}×{self.resolution} inputs "
                f"(learned positions of that grid); got {'×'.join(map(str, x.shape[1:]))}. Feed the "
                f"training size and render the predicted function at the size you want"
            )
        return super().patch_tokens(x)

    def function_from_tokens(self, data: torch.Tensor, c: torch.Tensor | None) -> INRImageFunction:
        """Function prediction: data tokens (B, T, D) (+ condition (B, D) on the INR tokens) → functions."""
        tokens = self.inr_tokens.expand(data.shape[0], -1, -1).to(data.dtype)  # (B, Σ g_t, D)
        if c is not None:
            tokens = tokens + c.unsqueeze(1)
        for block in self.decoder:
            tokens = block(tokens, data)
        return INRImageFunction(self.to_weights(tokens), self.n_freqs, self.max_freq)

    # -- contract ----------------------------------------------------------------------------------

    def predict_function(
        self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None,
        c_noise_2: torch.Tensor | None = None,
    ) -> INRImageFunction:
        """G_θ(x_in, c_noise, labels): the denoised images' functions (paper eq. 7)."""
        c = self.condition(c_noise, labels, c_noise_2)
        x = self.patch_tokens(x_in)
        for block in self.encoder:
            x = block(x, c)
        return self.function_from_tokens(x, c)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None,
                c_noise_2: torch.Tensor | None = None) -> torch.Tensor:
        """F_θ: the predicted functions rendered at the input's size (variational coordinates in training)."""
        return self.predict_function(x_in, c_noise, labels, c_noise_2).render(
            x_in.shape[-2], x_in.shape[-1], coords_noise=self.training
        )

    def reconstruct(self, x_in: torch.Tensor) -> INRImageFunction:
        """Reconstruction pre-training (paper §3.4, eq. 10): σ = 0, feature extraction skipped.

        The patch tokens (+ positions) of the clean input go straight to the function-prediction
        module, with no noise or label conditioning; `x_in` is the network input at σ = 0,
        c_in(0)·x (see ``cmzoo.train.pretrain``).
        """
        return self.function_from_tokens(self.patch_tokens(x_in), None)
