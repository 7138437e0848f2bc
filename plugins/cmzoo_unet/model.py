"""The ADM U-Net of the consistency-models code (Dhariwal & Nichol 2021; Song et al. 2023) as F_θ.

Residual blocks (GroupNorm-32, SiLU) conditioned on the noise embedding, self-attention at chosen
feature sizes, residual up/down-sampling, and skip concatenation between encoder and decoder.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

from cmzoo.layers import NoiseEmbedder

Resample = Literal["up", "down"]


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm, the normalisation of every ADM block (32 groups in ADM)."""
    return nn.GroupNorm(groups, channels)


def resample_op(resample: Resample | None) -> nn.Module:
    """Parameter-free 2× resampling: nearest-neighbour up, average-pool down, or none."""
    if resample == "up":
        return nn.Upsample(scale_factor=2.0, mode="nearest")
    if resample == "down":
        return nn.AvgPool2d(kernel_size=2, stride=2)
    return nn.Identity()


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, conditioned on the embedding; optionally resamples by 2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float = 0.0,
        scale_shift: bool = False,
        resample: Resample | None = None,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = group_norm(in_channels, norm_groups)
        self.resample = resample_op(resample)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels * (2 if scale_shift else 1))
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)  # zero-initialised
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # Resample between the activation and the first conv, on both branches, as ADM does.
        h = self.conv1(self.resample(F.silu(self.norm1(x))))  # (B, C_out, H', W')
        x = self.resample(x)  # (B, C_in, H', W')
        e = self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, C_out or 2·C_out, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class ConvResample(nn.Module):
    """The non-residual alternative to a resampling ResBlock: strided conv down, nearest + conv up."""

    def __init__(self, channels: int, resample: Resample) -> None:
        super().__init__()
        self.up = resample == "up"
        self.conv = nn.Conv2d(channels, channels, 3, stride=1 if self.up else 2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        # `emb` is unused; the signature matches ResBlock so both can sit in the same place.
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class AttentionBlock(nn.Module):
    """Residual multi-head self-attention over all H·W positions (SDPA via timm)."""

    def __init__(self, channels: int, head_channels: int, norm_groups: int = 32) -> None:
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.attn = Attention(channels, num_heads=channels // head_channels, qkv_bias=True)  # proj zero-init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H·W, C)
        out = self.attn(tokens).transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)
        return x + out


class UNetBlock(nn.Module):
    """One encoder or decoder step: a ResBlock, then optional attention, then optional resampling."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None = None, resample: nn.Module | None = None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn
        self.resample = resample

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.resample is not None:
            x = self.resample(x, emb)
        return x


# ----------------------------------------------------------------------------------------------------
# The U-Net
# ----------------------------------------------------------------------------------------------------


class UNet(nn.Module):
    """F_θ(x_in, c_noise, labels) → (B, C, H, W); the untrained output is exactly 0 (zero-init convs)."""

    def __init__(
        self,
        resolution: int,
        channels: int,
        model_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        attention_resolutions: tuple[int, ...],
        num_head_channels: int = 64,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = True,
        num_classes: int | None = None,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        emb_dim = 4 * model_channels

        def res(cin: int, cout: int, resample: Resample | None = None) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout, use_scale_shift_norm, resample, norm_groups)

        def resampler(ch: int, resample: Resample) -> nn.Module:
            return res(ch, ch, resample) if resblock_updown else ConvResample(ch, resample)

        def attention(ch: int, size: int) -> AttentionBlock | None:
            return AttentionBlock(ch, num_head_channels, norm_groups) if size in attention_resolutions else None

        # c_noise's sinusoidal features are model_channels wide, the MLP maps them to 4·model_channels.
        self.noise_embed = NoiseEmbedder(emb_dim, frequency_dim=model_channels)
        self.label_embed = nn.Embedding(num_classes, emb_dim) if num_classes else None

        ch = channel_mult[0] * model_channels
        self.input_conv = nn.Conv2d(channels, ch, 3, padding=1)
        skip_channels = [ch]  # the width of every encoder output the decoder will concatenate
        size = resolution
        self.encoder = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.encoder.append(UNetBlock(res(ch, mult * model_channels), attention(mult * model_channels, size)))
                ch = mult * model_channels
                skip_channels.append(ch)
            if level < len(channel_mult) - 1:
                self.encoder.append(resampler(ch, "down"))
                skip_channels.append(ch)
                size //= 2

        self.mid_res1 = res(ch, ch)
        self.mid_attn = AttentionBlock(ch, num_head_channels, norm_groups)
        self.mid_res2 = res(ch, ch)

        # One more block per decoder level than per encoder level: the extra skip is the downsampler's
        # output (at the top level, the input conv's).
        self.decoder = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                up = resampler(mult * model_channels, "up") if level > 0 and i == num_res_blocks else None
                block = res(ch + skip_channels.pop(), mult * model_channels)
                self.decoder.append(UNetBlock(block, attention(mult * model_channels, size), up))
                ch = mult * model_channels
            if level > 0:
                size *= 2

        self.out_norm = group_norm(ch, norm_groups)
        self.out_conv = nn.Conv2d(ch, channels, 3, padding=1)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # PyTorch's default init everywhere, as the reference; then zero the last layer of every
        # residual branch (each ResBlock's second conv, each attention projection) so every block
        # starts as its skip path, and zero the output conv so the untrained F_θ is exactly 0.
        for m in self.modules():
            if isinstance(m, ResBlock):
                last = m.conv2
            elif isinstance(m, AttentionBlock):
                last = m.attn.proj
            else:
                continue
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.noise_embed(c_noise)  # (B, 4·ch)
        if self.label_embed is not None and labels is not None:
            emb = emb + self.label_embed(labels)
        h = self.input_conv(x_in)  # (B, ch·mult[0], H, W)
        skips = [h]
        for block in self.encoder:
            h = block(h, emb)
            skips.append(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb)), emb)  # (B, ch·mult[-1], H/2^L, W/2^L)
        for block in self.decoder:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out_conv(F.silu(self.out_norm(h)))  # (B, C, H, W)
