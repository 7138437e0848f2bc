"""Render image functions at several sizes and aspect ratios from one consistency-trained `func`.

    python examples/render_image_function.py --pretrain-steps 100 --steps 150 --out runs/render

Pre-trains a tiny `func` by reconstruction (paper §3.4) for a few steps, consistency-trains it from
those weights, then draws n one-step samples — one image function each — and renders them at every
size in --sizes (OUT/samples_HxW.png). The functions are saved to OUT/functions.safetensors, loaded
back, and rendered at --render-size (OUT/render_HxW.png), a size they were never trained at. About
a minute on a CPU.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

import cmzoo
from cmzoo.grids import save_grid
from cmzoo.run import generate, load_image_function
from cmzoo.train import make_config, train
from cmzoo.train.pretrain import pretrain


def size(text: str) -> tuple[int, int]:
    """'64' → (64, 64); '48x96' → (48, 96) as (height, width)."""
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    function_backbones = [s.name for s in cmzoo.list_backbones() if s.capabilities.function_output]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="func", choices=function_backbones)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--data", default="shapes", help="image folder, .npz, CIFAR-10 folder or 'shapes'")
    p.add_argument("--resolution", type=int, default=32, help="training resolution")
    p.add_argument("--pretrain-steps", type=int, default=100, help="reconstruction pre-training steps (0: none)")
    p.add_argument("--steps", type=int, default=150, help="consistency-training steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n", type=int, default=9, help="image functions to sample")
    p.add_argument("--sizes", type=lambda t: [size(s) for s in t.split(",")], default="32,64,128,48x96,96x48",
                   help="comma-separated H or HxW sizes for the samples")
    p.add_argument("--render-size", type=size, default="256x128", help="H or HxW for the reloaded functions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/render_image_function")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    for own in ("pretrain", "run"):  # the example's own run directories: start them over
        shutil.rmtree(out / own, ignore_errors=True)
    common = dict(backbone=args.backbone, preset=args.preset, data=args.data, resolution=args.resolution,
                  batch_size=args.batch_size, seed=args.seed)

    # 1. Optional reconstruction pre-training; its run directory seeds consistency training.
    init_from = None
    if args.pretrain_steps:
        init_from = str(pretrain(make_config(**common, steps=args.pretrain_steps, out=str(out / "pretrain"))))
    run = train(**common, steps=args.steps, init_from=init_from, out=str(out / "run"), sample_every=0,
                checkpoint_every=0)

    # 2. One-step samples: one function per image, rendered at every size (paper App. D.3).
    images, functions = generate(run, n=args.n, steps=1, seed=args.seed, sizes=args.sizes, functions=True)
    for (h, w), batch in images.items():
        print(f"wrote {save_grid(batch, out / f'samples_{h}x{w}.png')}  {tuple(batch.shape)}")

    # 3. The functions themselves: save, load (the file names its backbone), render anywhere.
    path = out / "functions.safetensors"
    functions.save(path)
    loaded = load_image_function(path)
    print(f"wrote {path}: {loaded}")
    # A one-step sample's function is c_out(σ_max)·F_θ: the sample itself up to the skip term
    # c_skip(σ_max)·σ_max·z (≈ 0.003·z), which exists only at the training size.
    with torch.no_grad():
        h, w = args.render_size
        rendered = loaded.render(h, w).clamp(-1, 1)
        torch.testing.assert_close(loaded.render(h, w), functions.render(h, w))  # reload changes nothing
    print(f"wrote {save_grid(rendered, out / f'render_{h}x{w}.png')}  {tuple(rendered.shape)}")


if __name__ == "__main__":
    main()
