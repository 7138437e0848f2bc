"""PNG grids of one-step samples from the sample EMA, from fixed noise, written during training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torchvision.utils import make_grid

from cmzoo.data import to_uint8

if TYPE_CHECKING:
    from cmzoo.train.trainer import Trainer


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid, `nrow` (default √N) per row; one image as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, math.isqrt(len(images)))
    grid = make_grid(images, nrow=nrow, padding=1, value_range=(-1, 1), pad_value=1)
    Image.fromarray(to_uint8(grid).permute(1, 2, 0).numpy()).save(path)
    return path


def grid_sizes(trainer: "Trainer") -> list[tuple[int, int]]:
    """The training size; function backbones also render at twice that and at `config.grid_sizes`."""
    res = trainer.config.resolution
    sizes = [(res, res)]
    if trainer.spec.capabilities.function_output:
        sizes += [(2 * res, 2 * res)] + [tuple(s) for s in trainer.config.grid_sizes]
    return list(dict.fromkeys(sizes))


def save_sample_grids(trainer: "Trainer") -> list[Path]:
    from cmzoo.run import Run, generate

    run = Run(trainer.ema, trainer.config, trainer.spec, trainer.step, trainer.num_classes, trainer.data.images.shape[1])
    sizes = grid_sizes(trainer)
    images, _ = generate(run, trainer.config.grid_size, steps=1, seed=trainer.config.seed + 1, sizes=sizes)
    out = trainer.run_dir / "samples"
    if len(sizes) == 1:
        return [save_grid(images[sizes[0]], out / f"step_{trainer.step:08d}.png")]
    return [save_grid(images[s], out / f"step_{trainer.step:08d}_{s[0]}x{s[1]}.png") for s in sizes]
