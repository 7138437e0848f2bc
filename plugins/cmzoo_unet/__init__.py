"""The `unet` backbone plugin: the ADM / consistency-models U-Net, conditioned on c_noise (+ labels)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from cmzoo import BackboneConfig, BackboneSpec, Capabilities, hookimpl
from cmzoo_unet.model import UNet


class UNetConfig(BackboneConfig):
    model_channels: int = Field(256, gt=0)  # a multiple of norm_groups
    channel_mult: tuple[int, ...] | None = None  # None: the paper's rule, see model.paper_channel_mult
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


# Every number of a preset; channel_mult None: the paper's rule by resolution (model.paper_channel_mult).
PRESETS = {
    # Paper App. A.2 (CM's ImageNet-64 U-Net)
    "paper": {"model_channels": 256, "channel_mult": None, "num_res_blocks": 2, "attention_resolutions": (32, 16, 8),
              "num_head_channels": 64, "dropout": 0.0, "norm_groups": 32},
    "small": {"model_channels": 64, "channel_mult": (1, 2, 2, 2), "num_res_blocks": 2, "attention_resolutions": (16,),
              "num_head_channels": 64, "dropout": 0.0, "norm_groups": 32},
    # ≈0.9M parameters; one forward+backward of batch 32 at 32 px takes ≈0.5 s on one CPU core.
    "tiny": {"model_channels": 32, "channel_mult": (1, 1, 2), "num_res_blocks": 1, "attention_resolutions": (8,),
             "num_head_channels": 64, "dropout": 0.0, "norm_groups": 8},
}


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="unet",
            config_model=UNetConfig,
            presets=PRESETS,
            build=UNet,
            capabilities=Capabilities(class_conditional=True, zero_init_output=True),
            description="ADM U-Net: residual blocks, attention at 32/16/8 px, skip concatenation (Song et al. 2023)",
        )
    ]
