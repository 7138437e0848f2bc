"""What FID and precision degraded real images get on `shapes`: how sharp must samples be?

Held-out shapes images 5000–5299 (never trained on), degraded in a known way, are scored as samples
against the first 300 images of the set (the CPU default's evaluation: `cmzoo eval --data shapes
--n 300 --n-reference 300`). The rows tell which kind of sample meets a target such as FID ≤ 85 with
precision ≥ 0.3:

    python benchmarks/shapes_fid_calibration.py [--resolution 16]
"""

from __future__ import annotations

import argparse

import torch
import torchvision.transforms.functional as TF

from cmzoo.data import load_dataset
from cmzoo.data.shapes import render_shapes
from cmzoo.metrics.evaluate import evaluate_images

HELD_OUT = range(5000, 5300)


def degraded(held: torch.Tensor) -> dict[str, torch.Tensor]:
    """The held-out images as they are and under each degradation, in [-1, 1]."""
    return {
        "as they are (the floor)": held,
        "Gaussian blur, σ = 1 px": TF.gaussian_blur(held, 5, 1.0),
        "Gaussian blur, σ = 2 px": TF.gaussian_blur(held, 9, 2.0),
        "each image's mean colour, no shape": held.mean((2, 3), keepdim=True).expand_as(held),
        "half the contrast (×0.5)": held * 0.5,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=32, help="image side in px (default 32)")
    size = p.parse_args().resolution
    torch.set_num_threads(2)
    reference = load_dataset("shapes", size).images[:300]
    held = torch.stack([render_shapes(i, size, size) for i in HELD_OUT])
    print(f"| samples (300 held-out shapes images, {size} px) | FID | precision | recall |\n|---|---:|---:|---:|")
    for name, images in degraded(held).items():
        r = evaluate_images(images.clamp(-1, 1), reference, progress=False)
        print(f"| {name} | {r.fid:.1f} | {r.precision:.3f} | {r.recall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
