"""`convnext`: an example third-party cmzoo backbone, an isotropic ConvNeXt denoiser from timm blocks.

The core has never heard of it: installing this package adds an entry point in the ``cmzoo`` group,
and ``cmzoo backbones`` / ``cmzoo train --backbone convnext`` find it through the registry. This file
is the whole plugin interface — a config model, presets, a build function and the hook.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from torch import nn

from cmzoo import BackboneConfig, BackboneSpec, Capabilities, hookimpl
from cmzoo.errors import ConfigError
from cmzoo_convnext.model import ConvNeXtDenoiser

__all__ = ["PRESETS", "ConvNeXtConfig", "ConvNeXtDenoiser", "build", "cmzoo_register_backbones"]


class ConvNeXtConfig(BackboneConfig):
    """Fields of the `convnext` backbone; the base class rejects unknown fields and freezes instances."""

    dim: int = Field(768, gt=0)  # channels of every block (isotropic: no stages, no down-sampling)
    depth: int = Field(18, ge=1)  # ConvNeXt blocks
    patch_size: int | None = Field(None, gt=0)  # None: 4 at ≤ 64 px and 8 above, as cmzoo's Transformers
    kernel_size: int = Field(7, ge=1)  # depthwise convolution
    mlp_ratio: float = Field(4.0, gt=0)
    ls_init_value: float | None = Field(1e-6, gt=0)  # ConvNeXt's layer scale; None: no layer scale
    drop_path: float = Field(0.0, ge=0, lt=1)  # stochastic depth, shared by online and target (same RNG)

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"kernel_size {k} is even; use an odd size (e.g. 7) so blocks keep the grid size")
        return k


PRESETS = {
    # ConvNeXt-B (iso.) of Liu et al. 2022 (§ "isotropic ConvNeXt": dim 768, depth 18), sized like the
    # paper's Transformer backbones; FiLM conditioning adds 2·dim² per block.
    "paper": {},
    # A few hundred thousand parameters: a training step in a fraction of a second on one CPU core.
    "tiny": {"dim": 64, "depth": 4, "patch_size": 2},
}


def build(config: ConvNeXtConfig, resolution: int, channels: int, num_classes: int | None) -> nn.Module:
    """The F_θ module for `resolution`-px images with `channels` channels (and `num_classes` labels)."""
    patch = config.patch_size or (4 if resolution <= 64 else 8)
    if resolution % patch:
        raise ConfigError(
            f"backbone 'convnext': resolution {resolution} is not divisible by patch_size {patch}; "
            f"use a multiple of {patch} or set patch_size"
        )
    return ConvNeXtDenoiser(
        channels,
        patch_size=patch,
        dim=config.dim,
        depth=config.depth,
        kernel_size=config.kernel_size,
        mlp_ratio=config.mlp_ratio,
        ls_init_value=config.ls_init_value,
        drop_path=config.drop_path,
        num_classes=num_classes,
    )


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="convnext",
            config_model=ConvNeXtConfig,
            presets=PRESETS,
            build=build,
            capabilities=Capabilities(class_conditional=True, zero_init_output=True),
            description="isotropic ConvNeXt (timm blocks) with FiLM noise conditioning — an example plugin",
        )
    ]
