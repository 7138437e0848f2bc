"""PNG grids of images, and the one-step sample grids of the sample EMA from fixed noise that a run
records during training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torchvision.utils import make_grid

from cmzoo.data import to_uint8
from cmzoo.engine.sampling import Size

if TYPE_CHECKING:
    from cmzoo.train.trainer import Trainer


def grid_image(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """Images in [-1, 1] (N, C, H, W) as one uint8 (C, H', W') grid, `nrow` (default √N) per row, 1-px white
    padding; one image as is."""
    nrow = nrow or max(1, math.isqrt(len(images)))
    return to_uint8(make_grid(images, nrow=nrow, padding=1, value_range=(-1, 1), pad_value=1))


def save_png(image: torch.Tensor, path: Path) -> Path:
    """Save a uint8 (C, H, W) image as PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(path)
    return path


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid, `nrow` (default √N) per row."""
    return save_png(grid_image(images, nrow), path)


def grid_sizes(trainer: "Trainer") -> list[tuple[int, int]]:
    """The training size; function backbones also render at twice that and at `config.grid_sizes`."""
    res = trainer.config.resolution
    sizes = [(res, res)]
    if trainer.spec.capabilities.function_output:
        sizes += [(2 * res, 2 * res)] + [tuple(s) for s in trainer.config.grid_sizes]
    return list(dict.fromkeys(sizes))


def sample_grids(trainer: "Trainer") -> dict[Size, torch.Tensor]:
    """The trainer's one-step samples as uint8 grids, one per render size (see `grid_sizes`)."""
    from cmzoo.run import Run, generate

    run = Run(trainer.ema, trainer.config, trainer.spec, trainer.step, trainer.num_classes, trainer.data.images.shape[1])
    cfg = trainer.config
    images, _ = generate(run, cfg.grid_size, steps=1, seed=cfg.seed + 1, sizes=grid_sizes(trainer))
    return {size: grid_image(batch) for size, batch in images.items()}
