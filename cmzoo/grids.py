"""PNG grids of images: the samples of `cmzoo sample`, `render`, `edit`, `interpolate` and of training."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from cmzoo.data import to_uint8
from cmzoo.files import check_destination, writing


def grid_image(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """Images in [-1, 1] (N, C, H, W) as one uint8 (C, H', W') grid, `nrow` (default √N) per row, 1-px white
    padding; one image as is."""
    nrow = nrow or max(1, math.isqrt(len(images)))
    return to_uint8(make_grid(images, nrow=nrow, padding=1, value_range=(-1, 1), pad_value=1))


@cache
def image_suffixes() -> frozenset[str]:
    """The file suffixes PIL writes images to (.png, .jpg, .webp, …)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)


def check_image_destination(path: str | Path, what: str = "image") -> Path:
    """Refuse, before any work, an image file that cannot be written (see `cmzoo.files.check_destination`)."""
    return check_destination(path, what, image_suffixes())


def save_png(image: torch.Tensor, path: Path, what: str = "image") -> Path:
    """Save a uint8 (C, H, W) image, as PNG or the format its suffix names, creating its folder; an OS
    error is one OutputError line naming `what` and the path."""
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.cpu().permute(1, 2, 0).squeeze(-1).numpy()).save(path)
    return path


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None, what: str = "image grid") -> Path:
    """Save images in [-1, 1] (N, C, H, W) as one grid, `nrow` (default √N) per row (see `save_png`)."""
    return save_png(grid_image(images, nrow), path, what)

