"""The `unet` backbone plugin: the ADM / consistency-models U-Net, conditioned on c_noise (+ labels)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from torch import nn

from cmzoo import BackboneConfig, BackboneSpec, Capabilities, hookimpl
from cmzoo.errors import ConfigError
from cmzoo_unet.model import UNet


class UNetConfig(BackboneConfig):
    model_channels: int = Field(256, gt=0)  # a multiple of norm_groups
    channel_mult: tuple[int, ...] | None = None  # None: the paper's rule, see paper_channel_mult
    num_res_blocks: int = Field(2, gt=0)
    attention_resolutions: tuple[int, ...] = (32, 16, 8)  # feature-map sizes in pixels; sizes not reached are unused
    num_head_channels: int = Field(64, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    use_scale_shift_norm: bool = False
    resblock_updown: bool = True  # False: strided-conv / nearest+conv resampling instead of ResBlocks
    # ADM uses 32. With one channel per group the additive noise embedding, a per-channel constant,
    # is normalised away, so narrow U-Nets need fewer groups to stay noise-conditioned.
    norm_groups: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _groups_divide(self) -> "UNetConfig":
        if self.model_channels % self.norm_groups:
            raise ValueError(f"model_channels {self.model_channels} is not a multiple of norm_groups {self.norm_groups}")
        return self

    @field_validator("channel_mult")
    @classmethod
    def _positive_mults(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and (not v or min(v) < 1):
            raise ValueError(f"must be a non-empty tuple of positive integers, got {v}")
        return v


PRESETS = {
    "paper": {},  # paper App. A.2 (CM's ImageNet-64 U-Net): ch 256, 2 res blocks, attention at 32/16/8 px
    "small": {"model_channels": 64, "channel_mult": (1, 2, 2, 2), "attention_resolutions": (16,)},
    # ≈0.9M parameters; one forward+backward of batch 32 at 32 px takes ≈0.5 s on one CPU core.
    "tiny": {"model_channels": 32, "channel_mult": (1, 1, 2), "num_res_blocks": 1, "attention_resolutions": (8,),
             "norm_groups": 8},
}


def paper_channel_mult(resolution: int) -> tuple[int, ...]:
    """The paper's channel multipliers: (1, 2, 3, 4) up to 64 px, (1, 1, 2, 3, 4) above (128 px)."""
    return (1, 2, 3, 4) if resolution <= 64 else (1, 1, 2, 3, 4)


def build(config: UNetConfig, resolution: int, channels: int, num_classes: int | None) -> nn.Module:
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
    return UNet(
        resolution,
        channels,
        model_channels=config.model_channels,
        channel_mult=mult,
        num_res_blocks=config.num_res_blocks,
        attention_resolutions=config.attention_resolutions,
        num_head_channels=config.num_head_channels,
        dropout=config.dropout,
        use_scale_shift_norm=config.use_scale_shift_norm,
        resblock_updown=config.resblock_updown,
        num_classes=num_classes,
        norm_groups=config.norm_groups,
    )


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="unet",
            config_model=UNetConfig,
            presets=PRESETS,
            build=build,
            capabilities=Capabilities(class_conditional=True, zero_init_output=True),
            description="ADM U-Net: residual blocks, attention at 32/16/8 px, skip concatenation (Song et al. 2023)",
        )
    ]
