"""Trained runs as Python objects: load a run directory, generate samples at any size, save image
functions. The CLI's `sample` and `render` are thin shells over these functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn

import cmzoo.checkpoint as checkpoints
from cmzoo.backbone import BackboneSpec, ImageFunction
from cmzoo.config import TrainConfig
from cmzoo.data import to_uint8
from cmzoo.device import resolve_device
from cmzoo.engine.recipes import Recipe
from cmzoo.engine.sampling import Size
from cmzoo.errors import CheckpointError, ConfigError
from cmzoo.progress import progress_bar
from cmzoo.registry import build_backbone, get_backbone, get_recipe, require
from cmzoo.rundir import RunDir, check_same_network

Weights = Literal["ema", "online", "target"]
# px per side of any rendered or sampled image: one 4096×4096 RGB image is 200 MB in fp32, and a
# size typed with a digit too many must fail at once instead of trying to allocate hundreds of GB.
MAX_SIDE = 4096


@dataclass
class Run:
    """A trained model (a consistency function, or the recipe's own): loaded from a run directory, or as
    `train` returns it."""

    model: nn.Module
    config: TrainConfig
    spec: BackboneSpec
    step: int
    num_classes: int | None
    channels: int = 3
    directory: Path | None = None  # the run directory it was trained in or loaded from
    weights: Weights = "ema"  # which of the checkpoint's networks `model` holds

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def recipe(self) -> Recipe:
        """The recipe it was trained with, which samples it."""
        return get_recipe(self.config.recipe_name)


def load_run(run_dir: str | Path, weights: Weights = "ema", device: str | torch.device = "auto",
             checkpoint: int | str | Path | None = None) -> Run:
    """Rebuild the backbone of `run_dir` and load the `weights` of a checkpoint (the newest; a training
    step; or a file) onto `device` (auto: CUDA when available)."""
    run_dir = RunDir(run_dir)
    config = run_dir.read_config()
    path = run_dir.checkpoint_for(checkpoint)
    state = checkpoints.load_checkpoint(path)
    check_same_network(checkpoints.stored_config(state), config, f"run {run_dir} ({path.name})",
                       f"its {run_dir.config_file}", "restore the config's fields to those of its weights")
    if weights not in state:
        kept = [w for w in ("ema", "online", "target") if w in state]
        raise CheckpointError(f"{path} holds no {weights!r} weights (a reconstruction pre-training run keeps only "
                              f"its online network); choose --weights {' or '.join(kept)}")
    spec = get_backbone(config.backbone)
    net_state = state[weights]
    num_classes = state.get("num_classes")
    channels = int(state.get("channels", 3))  # checkpoints before channels were stored are RGB
    net = build_backbone(spec, spec.make_config(config.preset, **config.backbone_overrides), config.resolution, channels,
                         num_classes)
    # A run written before boundary_scale existed has none: it was trained with the paper's scalings.
    model = get_recipe(config.recipe_name).model(net, spec.capabilities.function_output, config.boundary_scale or 1.0)
    checkpoints.load_module_state(model.net, net_state, path)  # after the wrapper, which may add to the network
    model = model.to(resolve_device(device)).eval().requires_grad_(False)
    return Run(model, config, spec, int(state["step"]), num_classes, channels, run_dir.path, weights)


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
    check_count(n, "--n (images to generate)")
    check_count(batch_size, "--batch-size (images per forward pass)")
    res = run.resolution
    sizes = list(sizes) if sizes else [(res, res)]
    require_sizes(run, sizes, f"sampling at sizes {sizes}")
    schedule = run.recipe.schedule(steps)
    device = next(run.model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    if labels is None and run.num_classes:
        labels = torch.arange(n) % run.num_classes
    dtype = torch.uint8 if uint8 else torch.float32
    out = {s: torch.empty(n, run.channels, *s, dtype=dtype) for s in sizes}
    kept = []  # a function is about 1 MiB per image at the paper preset: kept only when asked
    with progress_bar(f"sampling {len(schedule)}-step", transient=True, disable=not progress) as bar:
        task = bar.add_task("sampling", total=n)
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            noise = torch.randn(b, run.channels, res, res, generator=generator).to(device)
            y = labels[start : start + b].to(device) if labels is not None else None
            images, fn = sample_batch(run, noise, schedule, sizes, y, generator)
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
    schedule: Sequence[float],
    sizes: Sequence[Size],
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[dict[Size, torch.Tensor], ImageFunction | None]:
    """Unclamped samples from `noise` at each size by the run's recipe (`schedule`: its `schedule(steps)`);
    function backbones also return their functions."""
    return run.recipe.sample(run.model, noise, schedule, labels, generator, sizes=sizes,
                             function_output=run.spec.capabilities.function_output)


def check_count(value: int, name: str, minimum: int = 1) -> int:
    """`value` if it is at least `minimum`, else a ConfigError naming it and the allowed range."""
    if value < minimum:
        raise ConfigError(f"{name} must be ≥ {minimum}, got {value}")
    return value


def check_size(size: Size) -> Size:
    """A render size (H, W) must have 1 to MAX_SIDE px per side; checked before anything is allocated."""
    if not all(1 <= side <= MAX_SIDE for side in size):
        raise ConfigError(f"size {size[0]}x{size[1]} is outside 1 to {MAX_SIDE} px per side; give a smaller size")
    return size


def require_sizes(run: Run, sizes: Sequence[Size], doing: str) -> None:
    """Sizes must be within MAX_SIDE, and other than the training size need a function backbone; the
    error says what `doing` needs."""
    for size in sizes:
        check_size(size)
    res = run.resolution
    if any(tuple(s) != (res, res) for s in sizes):
        require("function_output", run.spec, f"{doing} (trained at {res}×{res})")


def load_image_function(path: str | Path) -> ImageFunction:
    """Load saved image functions with the class of the backbone named in the file's metadata."""
    path = Path(path)
    if not path.is_file():
        found = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointError(f"image function file {path} {found}; give a file written by "
                              "`cmzoo sample --save-functions`")
    meta = checkpoints.read_safetensors_metadata(path)
    if meta.get("format") == checkpoints.FORMAT:
        raise CheckpointError(f"{path} is a training checkpoint, not saved image functions; save them with "
                              "`cmzoo sample --run RUN_DIR --save-functions F.safetensors`")
    if "backbone" not in meta:
        raise CheckpointError(f"{path} is a safetensors file without cmzoo image functions (its metadata names no "
                              "backbone); save them with `cmzoo sample --run RUN_DIR --save-functions F.safetensors`")
    spec = get_backbone(meta["backbone"])
    if spec.function_type is None:
        raise CheckpointError(f"{path} names backbone {spec.name!r}, which has no image functions")
    return spec.function_type.load(path)
