"""The `dit` backbone plugin: DiT with adaLN-Zero, conditioned on c_noise (+ labels)."""

from __future__ import annotations

from pydantic import Field

from cmzoo import BackboneSpec, Capabilities, TransformerConfig, hookimpl
from cmzoo_dit.model import DiT


class DiTConfig(TransformerConfig):
    depth: int = Field(15, ge=1)  # adaLN-Zero blocks
    dropout: float = Field(0.0, ge=0, lt=1)


# Every number of a preset, as DiT's DiT_XL_2 shows its own; patch_size None: 4 up to 64 px, 8 above.
# paper: App. A.3.
PRESETS = {
    "paper": {"dim": 768, "depth": 15, "num_heads": 12, "patch_size": None, "mlp_ratio": 4.0, "dropout": 0.0},
    "small": {"dim": 384, "depth": 12, "num_heads": 6, "patch_size": None, "mlp_ratio": 4.0, "dropout": 0.0},
    "tiny": {"dim": 128, "depth": 4, "num_heads": 4, "patch_size": None, "mlp_ratio": 4.0, "dropout": 0.0},
}


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="dit",
            config_model=DiTConfig,
            presets=PRESETS,
            build=DiT,
            capabilities=Capabilities(class_conditional=True, zero_init_output=True, second_time_input=True),
            description="DiT: patch tokens + adaLN-Zero Transformer blocks (Peebles & Xie 2023)",
        )
    ]
