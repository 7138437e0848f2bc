"""Zero-shot editing and noise interpolation with a trained run: the Python API behind `cmzoo edit` and
`cmzoo interpolate`. The formulas (CM Algorithm 4, slerp) are in `cmzoo.engine.editing`.

Inpainting: the image is centre-cropped to a square and resized to the training size, as training data
is; the mask has the image's own size, white where pixels are generated and black where the image is
kept (grey levels are thresholded at 0.5 after the same crop and resize). Super-resolution: the input is
the low-resolution image itself, square, with a side that divides the training size; the output at the
training size has its pixels as the means of its patches (exactly, up to the final clamp to [-1, 1]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence, get_args

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cmzoo.data import from_uint8, resize_square
from cmzoo.engine.editing import INPAINTING, LinearTransform, slerp_frames, superres_mask, superres_transform
from cmzoo.engine.parameterization import ConsistencyFunction
from cmzoo.engine.sampling import Size, edit_at_sizes, edit_sample, sigma_schedule
from cmzoo.errors import ConfigError, DataError
from cmzoo.run import Run, require_sizes, sample_batch

Task = Literal["inpaint", "superres"]
TASKS = get_args(Task)
EDIT_STEPS = 8  # Algorithm 4 needs several steps for the generated part to agree with the kept one
ImageSource = str | Path | Image.Image


def read_image(source: ImageSource, what: str = "image", mode: str = "RGB") -> torch.Tensor:
    """An image file (or PIL image) as uint8 (1, C, H, W); errors name the file."""
    if isinstance(source, Image.Image):
        arr = np.array(source.convert(mode))
    else:
        path = Path(source)
        if not path.is_file():
            found = "is a directory" if path.is_dir() else "does not exist"
            raise DataError(f"{what} file {path} {found}; give a PNG or JPEG file")
        try:
            with Image.open(path) as im:
                arr = np.array(im.convert(mode))
        except (UnidentifiedImageError, OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"cannot read {what} {path}: {reason}; give a PNG or JPEG file") from None
    t = torch.from_numpy(arr)
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None].contiguous()


def colour_mode(channels: int) -> str:
    """The PIL mode that reads an image with `channels` channels (1: greyscale)."""
    return "L" if channels == 1 else "RGB"


def inpainting_inputs(image: ImageSource, mask: ImageSource | None, resolution: int,
                      mode: str = "RGB") -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, Ω) at the training size from an image and a mask of the image's size (white = generate)."""
    if mask is None:
        raise ConfigError("inpainting needs a mask (--mask M.png): white where to generate, black where to keep the image")
    pixels, omega = read_image(image, mode=mode), read_image(mask, "mask", mode="L")
    if omega.shape[-2:] != pixels.shape[-2:]:
        raise DataError(f"mask {_name(mask)} is {_wxh(omega)} px but image {_name(image)} is {_wxh(pixels)} px; "
                        "give a mask of the image's size")
    reference = from_uint8(resize_square(pixels, resolution))
    return reference, (resize_square(omega, resolution) >= 128).float()


def superres_inputs(image: ImageSource, resolution: int,
                    mode: str = "RGB") -> tuple[torch.Tensor, torch.Tensor, LinearTransform]:
    """(reference, Ω, A) at the training size from a low-resolution image: each pixel becomes a patch."""
    low = read_image(image, mode=mode)
    side = low.shape[-1]
    sides = [d for d in range(1, resolution) if resolution % d == 0]
    if low.shape[-2] != side or side not in sides:
        raise DataError(f"super-resolution input {_name(image)} is {_wxh(low)} px; give a square image whose side "
                        f"divides the training size {resolution} (one of {', '.join(map(str, sides))})")
    patch = resolution // side
    reference = from_uint8(low).repeat_interleave(patch, -2).repeat_interleave(patch, -1)
    return reference, superres_mask(patch), superres_transform(patch)


@torch.no_grad()
def edit(
    run: Run,
    image: ImageSource,
    task: Task = "inpaint",
    mask: ImageSource | None = None,
    size: Size | None = None,
    steps: int | Sequence[float] = EDIT_STEPS,
    seed: int = 0,
) -> torch.Tensor:
    """The edited image (1, C, H, W) in [-1, 1] at `size` (default: the training size; other sizes need a
    function backbone, and there the kept part is followed, not imposed exactly)."""
    if task not in TASKS:
        raise ConfigError(f"unknown editing task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "superres" and mask is not None:
        raise ConfigError("--mask is for inpainting; super-resolution takes only the low-resolution image")
    if not isinstance(run.model, ConsistencyFunction):
        raise ConfigError(f"zero-shot editing (CM Algorithm 4) needs a consistency model, and this run was trained "
                          f"with recipe {run.config.recipe!r}; edit with a run of a consistency recipe (e.g. ect)")
    res = run.resolution
    size = tuple(size) if size else (res, res)
    require_sizes(run, [size], f"editing at {size[0]}×{size[1]}")
    if task == "inpaint":
        reference, omega = inpainting_inputs(image, mask, res, colour_mode(run.channels))
        transform = INPAINTING
    else:
        reference, omega, transform = superres_inputs(image, res, colour_mode(run.channels))
    device = next(run.model.parameters()).device
    reference, omega = reference.to(device), omega.to(device)
    sigmas = sigma_schedule(steps)
    generator = torch.Generator().manual_seed(seed)
    labels = _class_zero(run, 1, device)
    if size == (res, res):
        out = edit_sample(run.model, reference, sigmas, labels, generator, mask=omega, transform=transform)
    else:
        out = edit_at_sizes(run.model, reference, sigmas, labels, generator, mask=omega, sizes=[size],
                            transform=transform)[0][size]
    return out.clamp(-1, 1).cpu()


@torch.no_grad()
def interpolate(run: Run, seed_a: int, seed_b: int, frames: int = 8, size: Size | None = None) -> torch.Tensor:
    """One-step samples (frames, C, H, W) in [-1, 1] from noise slerped from seed_a's to seed_b's; the
    end frames are `generate(run, 1, seed=seed_a)` and `generate(run, 1, seed=seed_b)`."""
    if frames < 2:
        raise ConfigError(f"--frames must be at least 2 (the two seeds' samples), got {frames}")
    res = run.resolution
    size = tuple(size) if size else (res, res)
    require_sizes(run, [size], f"interpolating at {size[0]}×{size[1]}")
    z_a, z_b = (torch.randn(1, run.channels, res, res, generator=torch.Generator().manual_seed(s)) for s in (seed_a, seed_b))
    device = next(run.model.parameters()).device
    noise = slerp_frames(z_a, z_b, frames).to(device)
    images, _ = sample_batch(run, noise, run.recipe.schedule(1), [size], _class_zero(run, frames, device))
    return images[size].clamp(-1, 1).cpu()


def _class_zero(run: Run, n: int, device: torch.device) -> torch.Tensor | None:
    """Class-conditional runs edit and interpolate as class 0, the class of `generate`'s first sample."""
    return torch.zeros(n, dtype=torch.long, device=device) if run.num_classes else None


def _wxh(images: torch.Tensor) -> str:
    return f"{images.shape[-1]}×{images.shape[-2]}"


def _name(source: ImageSource) -> str:
    return "(PIL image)" if isinstance(source, Image.Image) else str(source)
