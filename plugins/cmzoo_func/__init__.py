"""The `func` backbone plugin: a Transformer that predicts an image function (INR weights).

From c_in·x it generates the weights of a small Fourier-feature MLP; F_θ is that function rendered at
the input's size, and the same function renders at any other size (paper §3.2–3.4, App. D.3).
"""

from __future__ import annotations

from pydantic import Field

from cmzoo import BackboneSpec, Capabilities, TransformerConfig, hookimpl
from cmzoo_func.image_function import INRImageFunction
from cmzoo_func.model import FunctionGenerator

__all__ = ["PRESETS", "FuncConfig", "FunctionGenerator", "INRImageFunction"]


class FuncConfig(TransformerConfig):
    encoder_depth: int = Field(8, ge=0)  # N: DiT adaLN-Zero blocks of the feature-extraction module
    decoder_depth: int = Field(6, ge=1)  # M: decoder blocks of the function-prediction module
    inr_depth: int = Field(5, ge=1)  # linear layers of the INR (the last one maps to the channels)
    inr_width: int = Field(256, gt=0)  # hidden width of the INR
    n_groups: int = Field(64, gt=0)  # weight tokens per INR layer (fewer when the layer is narrower)
    n_freqs: int = Field(64, gt=0)  # Fourier frequencies per coordinate axis → 4·n_freqs INR inputs
    max_freq: float = Field(1024.0, ge=1.0)  # frequencies are log-spaced from 1 to max_freq
    dropout: float = Field(0.0, ge=0, lt=1)


# Every number of a preset (patch_size None: 4 up to 64 px, 8 above).
PRESETS = {
    # Paper App. A.2: N = 8, M = 6, dim 768, 12 heads, INR 5 × 256 with 64 groups
    # (259 weight tokens), 64 frequencies 1…1024: ≈144M parameters at every resolution.
    "paper": {"dim": 768, "num_heads": 12, "patch_size": None, "mlp_ratio": 4.0, "encoder_depth": 8, "decoder_depth": 6,
              "inr_depth": 5, "inr_width": 256, "n_groups": 64, "n_freqs": 64, "max_freq": 1024.0, "dropout": 0.0},
    # A tiny func that learns within minutes of CPU. Its frequencies are log-spaced up to the paper's 1024,
    # far above the 32-px grid's Nyquist (16): those are near-random per-pixel features, so that F can
    # also remove pixel noise at mid σ, where c_skip passes half of it through. The CPU default's FID with
    # 16 frequencies 1…16 was 204 / 236 (seeds 0 / 1), with these 165 / 177 (`benchmarks/results/cpu_default.md`).
    "tiny": {"dim": 128, "num_heads": 4, "patch_size": 4, "mlp_ratio": 4.0, "encoder_depth": 2, "decoder_depth": 2,
             "inr_depth": 4, "inr_width": 64, "n_groups": 16, "n_freqs": 32, "max_freq": 1024.0, "dropout": 0.0},
}


@hookimpl
def cmzoo_register_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="func",
            config_model=FuncConfig,
            presets=PRESETS,
            build=FunctionGenerator,
            # Not zero_init_output: the untrained INR has unit-norm columns, so F_θ ≠ 0 (paper's design).
            capabilities=Capabilities(any_resolution=True, class_conditional=True, function_output=True, pretrain=True,
                                      second_time_input=True),
            description="image-function generator: DiT encoder + cross-attention decoder → INR weights (any size)",
            function_type=INRImageFunction,
        )
    ]
