"""The procedural `shapes` data set: one anti-aliased disc, square, triangle or ring in a colour on a
coloured background per image. Each image is an analytic function of continuous coordinates in [-1, 1]², so it
renders exactly at any size (pixel centres, as the func backbone), and index i is always the same image.

Anti-aliasing: a pixel's coverage of a shape is clamp(½ − sd/px, 0, 1), from the shape's signed
distance sd and the pixel width px, an analytic box-filter approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

KINDS = ("disc", "square", "triangle", "ring")


@dataclass(frozen=True)
class Shape:
    kind: str
    centre: tuple[float, float]  # (x, y) in [-1, 1]
    size: float  # radius / half side / circumradius
    angle: float
    colour: tuple[float, float, float]  # RGB in [-1, 1]


def shape_scene(index: int, seed: int = 0) -> tuple[tuple[float, float, float], list[Shape]]:
    """The background colour and the one large shape of image `index`, drawn from an RNG keyed by
    (seed, index). One shape of a half to a third of the image keeps the set learnable in minutes."""
    rng = np.random.default_rng([seed, index])
    background = tuple(rng.uniform(-1, 1, 3).tolist())
    shape = Shape(
        kind=KINDS[rng.integers(len(KINDS))],
        centre=tuple(rng.uniform(-0.4, 0.4, 2).tolist()),
        size=float(rng.uniform(0.35, 0.6)),
        angle=float(rng.uniform(0, 2 * math.pi)),
        colour=tuple(rng.uniform(-1, 1, 3).tolist()),
    )
    return background, [shape]


def pixel_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (y, x), each (H, W), with y_i = −1 + (2i+1)/H and x_j = −1 + (2j+1)/W."""
    ys = -1 + (2 * torch.arange(height, dtype=torch.float64) + 1) / height
    xs = -1 + (2 * torch.arange(width, dtype=torch.float64) + 1) / width
    return torch.meshgrid(ys, xs, indexing="ij")


def signed_distance(shape: Shape, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Signed distance to the shape's boundary (negative inside), in the same units as x and y."""
    cx, cy = shape.centre
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    u, v = c * (x - cx) + s * (y - cy), -s * (x - cx) + c * (y - cy)
    r = shape.size
    if shape.kind == "disc":
        return torch.sqrt(u**2 + v**2) - r
    if shape.kind == "ring":
        return (torch.sqrt(u**2 + v**2) - r).abs() - 0.3 * r
    if shape.kind == "square":
        h = r / math.sqrt(2)
        du, dv = u.abs() - h, v.abs() - h
        outside = torch.sqrt(du.clamp(min=0) ** 2 + dv.clamp(min=0) ** 2)
        return outside + torch.maximum(du, dv).clamp(max=0)
    # Equilateral triangle of circumradius r: the largest of its three edge-plane distances (a bound
    # outside near the corners, exact on and inside the edges, which is what the coverage needs).
    angles = torch.tensor([math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3])
    planes = [-(u * math.cos(a) + v * math.sin(a)) - r / 2 for a in angles.tolist()]
    return torch.stack(planes).amax(0)


def render_shapes(index: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Image `index` of the `shapes` set at H×W: float32 (3, H, W) in [-1, 1]."""
    background, shapes = shape_scene(index, seed)
    y, x = pixel_grid(height, width)
    img = torch.tensor(background, dtype=torch.float64)[:, None, None].expand(3, height, width).clone()
    px = 2.0 / min(height, width)
    for shape in shapes:
        cover = (0.5 - signed_distance(shape, y, x) / px).clamp(0, 1)
        img = img * (1 - cover) + torch.tensor(shape.colour, dtype=torch.float64)[:, None, None] * cover
    return img.float()
