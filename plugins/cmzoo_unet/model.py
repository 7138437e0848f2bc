"""The ADM U-Net of the consistency-models code (Dhariwal & Nichol 2021; Song et al. 2023) as F_θ.

Residual blocks (GroupNorm-32, SiLU) conditioned on the noise embedding, self-attention at chosen
feature sizes, residual up/down-sampling, and skip concatenation between encoder and decoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

from cmzoo.errors import ConfigError
from cmzoo.layers import NoiseEmbedder

if TYPE_CHECKING:
    from cmzoo_unet import UNetConfig

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


def paper_channel_mult(resolution: int) -> tuple[int, ...]:
    """The paper's channel multipliers: (1, 2, 3, 4) up to 64 px, (1, 1, 2, 3, 4) above (128 px)."""
    return (1, 2, 3, 4) if resolution <= 64 else (1, 1, 2, 3, 4)


def checked_channel_mult(config: UNetConfig, resolution: int) -> tuple[int, ...]:
    """`config.channel_mult` (None: the paper's rule), checked against `resolution` and the attention heads."""
    mult = config.channel_mult or paper_channel_mult(resolution)
    factor = 2 ** (len(mult) - 1)
    if resolution % factor:
        raise ConfigError(
            f"backbone 'unet': resolution {resolution} is not divisible by {factor} (2**(levels-1) for "
            f"channel_mult {mult}); use a multiple of {factor} or a shorter channel_mult"
        )
    attn_widths = {
        m * config.model_channels for i, m in enumerate(mult) if resolution // 2**i in config.attention_resolutions
    }
    attn_widths.add(mult[-1] * config.model_channels)  # the middle block always attends
    bad = sorted(w for w in attn_widths if w % config.num_head_channels)
    if bad:
        raise ConfigError(
            f"backbone 'unet': num_head_channels {config.num_head_channels} does not divide the attention "
            f"width(s) {bad}; choose a num_head_channels that divides them"
        )
    return mult


class UNet(nn.Module):
    """F_θ(x_in, c_noise, labels) → (B, C, H, W); the untrained output is exactly 0 (zero-init convs)."""

    def __init__(self, config: UNetConfig, resolution: int, channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        widths = [m * config.model_channels for m in checked_channel_mult(config, resolution)]  # per level
        emb_dim = 4 * config.model_channels

        def res(cin: int, cout: int, resample: Resample | None = None) -> ResBlock:
            return ResBlock(
                cin, cout, emb_dim, config.dropout, config.use_scale_shift_norm, resample, config.norm_groups
            )

        def resampler(ch: int, resample: Resample) -> nn.Module:
            return res(ch, ch, resample) if config.resblock_updown else ConvResample(ch, resample)

        def attention(ch: int, size: int) -> AttentionBlock | None:
            if size not in config.attention_resolutions:
                return None
            return AttentionBlock(ch, config.num_head_channels, config.norm_groups)

        # c_noise's sinusoidal features are model_channels wide, the MLP maps them to 4·model_channels.
        self.noise_embed = NoiseEmbedder(emb_dim, frequency_dim=config.model_channels)
        self.label_embed = nn.Embedding(num_classes, emb_dim) if num_classes else None

        ch = widths[0]
        self.input_conv = nn.Conv2d(channels, ch, 3, padding=1)
        skip_channels = [ch]  # the width of every encoder output the decoder will concatenate
        size = resolution
        self.encoder = nn.ModuleList()
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                self.encoder.append(UNetBlock(res(ch, width), attention(width, size)))
                ch = width
                skip_channels.append(ch)
            if level < len(widths) - 1:
                self.encoder.append(resampler(ch, "down"))
                skip_channels.append(ch)
                size //= 2

        self.mid_res1 = res(ch, ch)
        self.mid_attn = AttentionBlock(ch, config.num_head_channels, config.norm_groups)
        self.mid_res2 = res(ch, ch)

        # One more block per decoder level than per encoder level: the extra skip is the downsampler's
        # output (at the top level, the input conv's).
        self.decoder = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for i in range(config.num_res_blocks + 1):
                up = resampler(width, "up") if level > 0 and i == config.num_res_blocks else None
                block = res(ch + skip_channels.pop(), width)
                self.decoder.append(UNetBlock(block, attention(width, size), up))
                ch = width
            if level > 0:
                size *= 2

        self.out_norm = group_norm(ch, config.norm_groups)
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
