"""Train a backbone through the Python API, then sample from it in one and in two steps.

    python examples/train_and_sample.py --backbone dit --steps 200 --out runs/train_and_sample

Writes OUT/run/ (the run directory: config.json, metrics.jsonl, checkpoints, training grids) and
OUT/samples_1step.png, OUT/samples_2step.png. About a minute on a CPU with the `tiny` preset; any
installed backbone works, third-party plugins included (`cmzoo backbones` lists them).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cmzoo
from cmzoo.grids import save_grid
from cmzoo.run import generate
from cmzoo.train import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="dit", choices=[s.name for s in cmzoo.list_backbones()])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--data", default="shapes", help="image folder, .npz, CIFAR-10 folder or 'shapes'")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--steps", type=int, default=200, help="training steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n", type=int, default=16, help="samples to draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train_and_sample")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out / "run", ignore_errors=True)  # the example's own run directory: start it over

    # 1. Train: any TrainConfig field is a keyword (recipe, lr, distance, backbone_overrides, ...). It returns the
    # trained model (the sample EMA) as a Run; `load_run(directory)` gives the same one back later.
    run = train(
        backbone=args.backbone, preset=args.preset, data=args.data, resolution=args.resolution, steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, out=str(out / "run"), sample_every=0, checkpoint_every=0,
    )
    records = [json.loads(line) for line in (run.directory / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]  # other lines log e.g. the denoising distance
    print(f"trained {args.backbone}/{args.preset} for {args.steps} steps: loss {losses[0]:.3f} → {losses[-1]:.3f}")

    # 2. Sample from the sample-EMA weights: one step from σ_max, and two steps (80 → 0.66, CM paper).
    for name, steps in (("1step", 1), ("2step", [80.0, 0.661])):
        images, _ = generate(run, n=args.n, steps=steps, seed=args.seed)  # {(H, W): (n, 3, H, W) in [-1, 1]}
        (batch,) = images.values()
        print(f"wrote {save_grid(batch, out / f'samples_{name}.png')}  {tuple(batch.shape)}")


if __name__ == "__main__":
    main()
