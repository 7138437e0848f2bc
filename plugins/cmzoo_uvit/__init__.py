"""The `uvit` backbone plugin: U-ViT, noise level and label as tokens, long skips."""

from __future__ import annotations

from pydantic import Field, field_validator

from cmzoo import BackboneSpec, Capabilities, TransformerConfig, hookimpl
from cmzoo_uvit.model import UViT


class UViTConfig(TransformerConfig):
    depth: int = Field(15, ge=1)  # in-blocks + 1 mid block + out-blocks: 15 → 7 / 1 / 7
    qkv_bias: bool = False
    final_conv: bool = True  # 3×3 conv on the unpatchified output
    long_skips: bool = True  # out-block i fuses in-block (n − i) by concat → Linear(2·dim → dim)

    @field_validator("depth")
    @classmethod
    def _odd_depth(cls, depth: int) -> int:
        if depth % 2 == 0:
            raise ValueError(f"must be odd (in + 1 mid + out blocks), got {depth}; e.g. 15 = 7 + 1 + 7")
        return depth


# Every number of a preset; patch_size None: 4 up to 64 px, 8 above.
PRESETS = {
    "paper": {"dim": 768, "depth": 15, "num_heads": 12, "patch_size": None, "mlp_ratio": 4.0},  # App. A.3: 7 + 1 + 7
    "tiny": {"dim": 128, "depth": 5, "num_heads": 4, "patch_size": None, "mlp_ratio": 4.0},
}


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="uvit",
            config_model=UViTConfig,
            presets=PRESETS,
            build=UViT,
            capabilities=Capabilities(class_conditional=True),
            description="U-ViT: noise level and label as tokens, ViT blocks with long skips (Bao et al. 2023)",
        )
    ]
