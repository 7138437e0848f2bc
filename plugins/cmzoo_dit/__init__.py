"""The `dit` backbone plugin: DiT with adaLN-Zero, conditioned on c_noise (+ labels)."""

from __future__ import annotations

from torch import nn

from cmzoo import BackboneConfig, BackboneSpec, Capabilities, hookimpl
from cmzoo.layers import checked_patch_size
from cmzoo_dit.model import DiT


class DiTConfig(BackboneConfig):
    dim: int = 768
    depth: int = 15
    num_heads: int = 12
    patch_size: int | None = None  # None: the paper's rule, 4 at ≤ 64 px and 8 above
    mlp_ratio: float = 4.0
    dropout: float = 0.0


PRESETS = {
    "paper": {},  # paper App. A.3: dim 768, 12 heads, depth 15
    "small": {"dim": 384, "depth": 12, "num_heads": 6},
    "tiny": {"dim": 128, "depth": 4, "num_heads": 4},
}


def build(config: DiTConfig, resolution: int, channels: int, num_classes: int | None) -> nn.Module:
    return DiT(
        resolution,
        channels,
        patch_size=checked_patch_size("dit", resolution, config.patch_size),
        dim=config.dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        dropout=config.dropout,
        num_classes=num_classes,
    )


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="dit",
            config_model=DiTConfig,
            presets=PRESETS,
            build=build,
            capabilities=Capabilities(class_conditional=True, zero_init_output=True),
            description="DiT: patch tokens + adaLN-Zero Transformer blocks (Peebles & Xie 2023)",
        )
    ]
