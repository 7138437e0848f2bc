"""What `cmzoo bench` measures and how: one validated, frozen config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cmzoo.config import config_from

Figure = Literal["params", "train", "infer", "multires", "quality", "convergence"]
EFFICIENCY: tuple[str, ...] = ("params", "train", "infer", "multires")  # the default: quality and convergence train


class BenchConfig(BaseModel):
    """The backbones, figures and protocol of one benchmark."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbones: list[str] = Field(default_factory=lambda: ["unet", "uvit", "dit", "func"], min_length=1)
    preset: str = "tiny"
    resolutions: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    only: list[Figure] = Field(default_factory=lambda: list(EFFICIENCY), min_length=1)
    device: str = "auto"
    batch_size: int = Field(8, ge=1)  # per training step and per inference call
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False  # torch.compile the timed modules (FLOPs are counted eagerly)
    warmup: int = Field(2, ge=0)
    repeats: int = Field(5, ge=1)
    multires_base: int = Field(64, ge=4)  # the training size of function backbones (paper Table 2: CelebA 64)
    out: str = "runs/bench"
    seed: int = 0
    # Quality: every backbone trains with the same data, recipe, batch and budget, then `cmzoo eval`.
    data: str | None = None  # None: procedural shapes
    quality_resolution: int | None = Field(None, ge=4)  # None: the first of `resolutions`
    steps: int = Field(400, ge=1)  # step budget (the curriculum's K) ...
    seconds: float | None = Field(None, gt=0)  # ... or a wall-clock budget, converted per backbone
    quality_batch_size: int = Field(32, ge=1)
    recipe: str | None = None  # None: the preset's default (ect for tiny, ct for paper)
    n_eval: int = Field(1000, ge=2)  # one-step samples scored per backbone
    n_reference: int | None = Field(None, ge=2)  # None: the whole data set
    stability_sigma: float = Field(1.0, gt=0)  # the denoising-distance bucket plotted against step
    # TrainConfig fields every quality and convergence run also gets, e.g. {boundary_scale = 10}.
    train_overrides: dict[str, Any] = Field(default_factory=dict)
    # Convergence: one run per backbone under the quality protocol, scored at these training minutes.
    minutes: list[float] = Field(default_factory=lambda: [5.0, 10.0, 20.0, 40.0], min_length=1)
    # Training steps per minute by backbone name; a backbone not named here is timed over a few steps.
    # Pinned rates make a rerun stop at the same steps whatever else the machine is doing.
    steps_per_minute: dict[str, float] = Field(default_factory=dict)

    @field_validator("train_overrides")
    @classmethod
    def _not_the_protocol(cls, v: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(set(v) & {"backbone", "steps", "stop_at", "out"})
        if owned:
            raise ValueError(f"{', '.join(owned)} are set by the bench for every backbone; remove them")
        return v

    @field_validator("steps_per_minute")
    @classmethod
    def _positive_rates(cls, v: dict[str, float]) -> dict[str, float]:
        if any(rate <= 0 for rate in v.values()):
            raise ValueError("every rate must be > 0 steps per minute")
        return v

    @field_validator("minutes")
    @classmethod
    def _positive_minutes(cls, v: list[float]) -> list[float]:
        if any(m <= 0 for m in v):
            raise ValueError("every scoring point must be > 0 minutes")
        return sorted(_unique(v))

    @field_validator("resolutions")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(r < 4 for r in v):
            raise ValueError("every resolution must be ≥ 4 px")
        return _unique(v)

    @field_validator("backbones", "only")
    @classmethod
    def _unique_names(cls, v: list[str]) -> list[str]:
        return _unique(v)

    @property
    def quality_size(self) -> int:
        return self.quality_resolution or self.resolutions[0]


def _unique(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"each value may appear once, got {values}")
    return values


def make_bench_config(file: str | Path | None = None, **overrides: Any) -> BenchConfig:
    """TOML file (optional) → keyword overrides (those that are not None) → validate; errors name the field."""
    return config_from(BenchConfig, "bench config", file, overrides)
