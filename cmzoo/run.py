"""Trained runs as Python objects: load a run directory, generate samples at any size, save image
functions. The CLI's `sample` and `render` are thin shells over these functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from pydantic import ValidationError

from cmzoo.backbone import BackboneSpec, ImageFunction, validation_message
import cmzoo.checkpoint as checkpoint
from cmzoo.config import TrainConfig
from cmzoo.data import to_uint8
from cmzoo.device import resolve_device
from cmzoo.engine.parameterization import SIGMA_MAX, ConsistencyFunction
from cmzoo.engine.sampling import Size, check_sigmas, multistep_sample, sample_at_sizes
from cmzoo.engine.schedules import karras_sigmas
from cmzoo.errors import CheckpointError, ConfigError
from cmzoo.plugins import build_backbone, get_backbone, require
from cmzoo.progress import progress_bar

Weights = Literal["ema", "online", "target"]


@dataclass
class Run:
    """A trained consistency model loaded from a run directory."""

    model: ConsistencyFunction
    config: TrainConfig
    spec: BackboneSpec
    step: int
    num_classes: int | None
    channels: int = 3

    @property
    def resolution(self) -> int:
        return self.config.resolution


def read_run_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a cmzoo run directory (no config.json); give the --out of `cmzoo train`")
    try:
        return TrainConfig.model_validate_json(path.read_text())
    except ValidationError as err:
        raise CheckpointError(f"{path} is not a valid run config: {validation_message(err)}") from None


def load_run(run_dir: str | Path, weights: Weights = "ema", device: str | torch.device = "auto",
             checkpoint_path: str | Path | None = None) -> Run:
    """Rebuild the backbone of `run_dir` and load the `weights` of its newest (or given) checkpoint onto
    `device` (auto: CUDA when available)."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = Path(checkpoint_path) if checkpoint_path else checkpoint.latest_checkpoint(run_dir / "checkpoints")
    state = checkpoint.load_checkpoint(path)
    spec = get_backbone(config.backbone)
    net_state = state[weights]
    num_classes = state.get("num_classes")
    channels = int(state.get("channels", 3))  # checkpoints before channels were stored are RGB
    net = build_backbone(spec, spec.make_config(config.preset, **config.backbone_overrides), config.resolution, channels,
                         num_classes)
    checkpoint.load_module_state(net, net_state, path)
    # A run written before boundary_scale existed has none: it was trained with the paper's scalings.
    model = ConsistencyFunction(net, boundary_scale=config.boundary_scale or 1.0)
    model = model.to(resolve_device(device)).eval().requires_grad_(False)
    return Run(model, config, spec, int(state["step"]), num_classes, channels)


def sigma_schedule(steps: int | Sequence[float]) -> list[float]:
    """An explicit decreasing σ list, or n steps: the n largest points of an (n+1)-point Karras grid."""
    if isinstance(steps, int):
        if steps < 1:
            raise ConfigError(f"--steps must be ≥ 1, got {steps}")
        return [SIGMA_MAX] if steps == 1 else karras_sigmas(steps + 1).flip(0)[:steps].tolist()
    sigmas = [float(s) for s in steps]
    check_sigmas(sigmas)
    return sigmas


@torch.no_grad()
def generate(
    run: Run,
    n: int,
    steps: int | Sequence[float] = 1,
    seed: int = 0,
    sizes: Sequence[Size] | None = None,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    progress: bool = False,
    functions: bool = False,
    uint8: bool = False,
) -> tuple[dict[Size, torch.Tensor], ImageFunction | None]:
    """n samples at each size (default: the training size), in [-1, 1] or, with `uint8`, as uint8 (a
    quarter of the memory), on the CPU; with `functions` (function backbones), also the n image
    functions they were rendered from, else None. Every batch leaves the device at once, so device
    memory does not grow with n; `progress` shows a bar over the images."""
    res = run.resolution
    sizes = list(sizes) if sizes else [(res, res)]
    require_sizes(run, sizes, f"sampling at sizes {sizes}")
    sigmas = sigma_schedule(steps)
    device = next(run.model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    if labels is None and run.num_classes:
        labels = torch.arange(n) % run.num_classes
    dtype = torch.uint8 if uint8 else torch.float32
    out = {s: torch.empty(n, run.channels, *s, dtype=dtype) for s in sizes}
    kept = []  # a function is about 1 MiB per image at the paper preset: kept only when asked
    with progress_bar(f"sampling {len(sigmas)}-step", transient=True, disable=not progress) as bar:
        task = bar.add_task("sampling", total=n)
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            noise = torch.randn(b, run.channels, res, res, generator=generator).to(device)
            y = labels[start : start + b].to(device) if labels is not None else None
            images, fn = sample_batch(run, noise, sigmas, sizes, y, generator)
            if functions and fn is not None:
                kept.append(fn.to("cpu"))
            for s in sizes:
                batch = images[s].clamp(-1, 1)
                out[s][start : start + b] = to_uint8(batch) if uint8 else batch
            bar.advance(task, b)
    return out, type(kept[0]).cat(kept) if kept else None


def sample_batch(
    run: Run,
    noise: torch.Tensor,
    sigmas: Sequence[float],
    sizes: Sequence[Size],
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[dict[Size, torch.Tensor], ImageFunction | None]:
    """Unclamped samples from `noise` at each size; function backbones also return their functions."""
    if run.spec.capabilities.function_output:
        return sample_at_sizes(run.model, noise, sizes, sigmas, labels, generator)
    return {(run.resolution, run.resolution): multistep_sample(run.model, noise, sigmas, labels, generator)}, None


def require_sizes(run: Run, sizes: Sequence[Size], doing: str) -> None:
    """Sizes other than the training size need a function backbone; the error says what `doing` needs."""
    res = run.resolution
    if any(tuple(s) != (res, res) for s in sizes):
        require("function_output", run.spec, f"{doing} (trained at {res}×{res})")


def load_image_function(path: str | Path) -> ImageFunction:
    """Load saved image functions with the class of the backbone named in the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"image function file {path} does not exist")
    try:
        meta = checkpoint.read_safetensors_metadata(path)
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{path} is not a safetensors image-function file: {err}") from None
    spec = get_backbone(meta.get("backbone", "?"))
    if spec.function_type is None:
        raise CheckpointError(f"{path} names backbone {spec.name!r}, which has no image functions")
    return spec.function_type.load(path)
