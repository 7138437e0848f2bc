"""`convnext`: an example third-party cmzoo backbone, an isotropic ConvNeXt denoiser from timm blocks.

The core has never heard of it: installing this package adds an entry point in the ``cmzoo`` group,
and ``cmzoo backbones`` / ``cmzoo train --backbone convnext`` find it through the registry. This file
is the whole plugin interface — a config model, presets and the hook. The model takes the config
itself (``ConvNeXtDenoiser(config, resolution, channels, num_classes)``), so the class is the build.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from cmzoo import BackboneConfig, BackboneSpec, Capabilities, hookimpl
from cmzoo_convnext.model import ConvNeXtDenoiser

__all__ = ["PRESETS", "ConvNeXtConfig", "ConvNeXtDenoiser", "cmzoo_register_backbones"]


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


# Each preset shows all its numbers; the config's defaults are the paper preset's.
PRESETS = {
    # ConvNeXt-B (iso.) of Liu et al. 2022 (§ "isotropic ConvNeXt": dim 768, depth 18), sized like the
    # paper's Transformer backbones; FiLM conditioning adds 2·dim² per block.
    "paper": {"dim": 768, "depth": 18, "patch_size": None, "kernel_size": 7, "mlp_ratio": 4.0, "ls_init_value": 1e-6,
              "drop_path": 0.0},
    # A few hundred thousand parameters: a training step in a fraction of a second on one CPU core.
    "tiny": {"dim": 64, "depth": 4, "patch_size": 2, "kernel_size": 7, "mlp_ratio": 4.0, "ls_init_value": 1e-6,
             "drop_path": 0.0},
}


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="convnext",
            config_model=ConvNeXtConfig,
            presets=PRESETS,
            build=ConvNeXtDenoiser,
            capabilities=Capabilities(class_conditional=True, zero_init_output=True),
            description="isotropic ConvNeXt (timm blocks) with FiLM noise conditioning — an example plugin",
        )
    ]
