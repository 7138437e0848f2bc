"""PNG grids of images: the samples of `cmzoo sample`, `render`, `edit`, `interpolate` and of training."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from cmzoo.data import to_uint8


def grid_image(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """Images in [-1, 1] (N, C, H, W) as one uint8 (C, H', W') grid, `nrow` (default √N) per row, 1-px white
    padding; one image as is."""
    nrow = nrow or max(1, math.isqrt(len(images)))
    return to_uint8(make_grid(images, nrow=nrow, padding=1, value_range=(-1, 1), pad_value=1))


def save_png(image: torch.Tensor, path: Path) -> Path:
    """Save a uint8 (C, H, W) image as PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.cpu().permute(1, 2, 0).squeeze(-1).numpy()).save(path)
    return path


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid, `nrow` (default √N) per row."""
    return save_png(grid_image(images, nrow), path)

