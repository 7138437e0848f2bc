"""The backbone contract: what a plugin declares (BackboneSpec) and what its module must do.

A backbone computes F_θ in f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x, c_noise(σ)); only the
preconditioning wrapper (`cmzoo.engine.parameterization.ConsistencyFunction`) knows σ.

Module contract::

    forward(x_in: (B, C, H, W), c_noise: (B,), labels: (B,) long | None) -> (B, C, H, W)

Function backbones (capability ``function_output``) also implement
``predict_function(x_in, c_noise, labels=None) -> ImageFunction``; their ``forward`` renders that
function at the input's own size. Backbones with capability ``pretrain`` implement
``reconstruct(x) -> ImageFunction`` (paper §3.4: σ = 0, feature extraction skipped). Backbones with
capability ``second_time_input`` implement ``add_second_time_input()``, which adds the embedding of a
second noise conditioning, zero-initialised so that the output is unchanged; from then on ``forward``
(and ``predict_function``) also take ``c_noise_2`` (B,) by keyword. A recipe that needs it (MeanFlow's
t − r) asks for it, so the other recipes train and load the one-input network they always did.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from cmzoo.errors import ConfigError


class BackboneConfig(BaseModel):
    """Base of every plugin's config model: unknown fields are rejected, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformerConfig(BackboneConfig):
    """The fields every patch-Transformer backbone shares; the heads must divide the width."""

    dim: int = Field(768, gt=0)
    num_heads: int = Field(12, gt=0)
    patch_size: int | None = Field(None, gt=0)  # None: the paper's rule, 4 at ≤ 64 px and 8 above
    mlp_ratio: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "TransformerConfig":
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}; choose a divisor")
        return self


@dataclass(frozen=True)
class Capabilities:
    """What a backbone declares about itself; the conformance helper checks each claim."""

    any_resolution: bool = False  # renders sizes other than the one it was trained at
    class_conditional: bool = False  # accepts `labels`
    zero_init_output: bool = False  # the untrained F_θ is exactly 0
    function_output: bool = False  # exposes predict_function(...) -> ImageFunction
    pretrain: bool = False  # supports reconstruction pre-training (reconstruct(x))
    second_time_input: bool = False  # add_second_time_input(), then forward(…, c_noise_2=…)

    def names(self) -> list[str]:
        """The names of the capabilities that are declared true."""
        return [f.name for f in fields(self) if getattr(self, f.name)]


@runtime_checkable
class ImageFunction(Protocol):
    """A batch of image functions (INR weights + a fixed render rule), renderable at any size."""

    def render(self, height: int, width: int, chunk: int | None = None) -> torch.Tensor:
        """Render every function on the pixel-centre grid of an H×W image: (B, C, H, W)."""
        ...

    def render_pixels(
        self, height: int, width: int, pixels: torch.Tensor, coords_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Colours at some pixel centres of an H×W grid: `pixels` (B, n) row-major indices → (B, C, n)."""
        ...

    def save(self, path: str | Path) -> None:
        """Write the functions to a safetensors file whose metadata names the backbone ("backbone")."""
        ...

    @classmethod
    def load(cls, path: str | Path) -> "ImageFunction": ...

    @classmethod
    def cat(cls, functions: "list[ImageFunction]") -> "ImageFunction":
        """One batch of several batches of functions."""
        ...

    def to(self, device: torch.device | str) -> "ImageFunction": ...

    def scaled(self, factors: torch.Tensor) -> "ImageFunction":
        """The functions multiplied by per-function factors (B,), e.g. c_out(σ)."""
        ...

    def __len__(self) -> int: ...


BuildFn = Callable[[BaseModel, int, int, "int | None"], nn.Module]


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the core knows about one backbone; returned by a plugin's hook."""

    name: str
    config_model: type[BackboneConfig]
    presets: Mapping[str, Mapping[str, Any]]
    build: BuildFn  # (config, resolution, channels, num_classes) -> nn.Module computing F_θ
    capabilities: Capabilities = field(default_factory=Capabilities)
    description: str = ""
    function_type: type | None = None  # ImageFunction class with `.load(path)`, for function backbones
    plugin: str = ""  # filled in by the registry: the plugin that registered the spec

    def make_config(self, preset: str = "tiny", **overrides: Any) -> BackboneConfig:
        """Validate `preset` + `overrides` with the plugin's config model; errors name the field."""
        if preset not in self.presets:
            raise ConfigError(
                f"backbone {self.name!r} has no preset {preset!r}; choose one of {sorted(self.presets)}"
            )
        values = {**self.presets[preset], **overrides}
        try:
            return self.config_model(**values)
        except ValidationError as err:
            raise ConfigError(f"backbone {self.name!r}: {validation_message(err)}") from None


def validation_message(err: ValidationError) -> str:
    """One line naming every invalid field of a pydantic error and what was wrong with it."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        parts.append(f"field {loc!r}: {msg}")
    return "; ".join(parts)

