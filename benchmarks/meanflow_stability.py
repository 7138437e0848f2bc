"""MeanFlow's stability on a backbone: the rms of the one-step average velocity u(z, 0, 1) and of the
flow-matching velocity u(z, 1, 1), for the online network and the sample EMA, every few steps of a
short run at a given time scale and learning rate. A run whose average-velocity branch blows up shows
it here long before its FID does (`recipes_meanflow/README.md`).

    python benchmarks/meanflow_stability.py --backbone dit --steps 2720 --every 136 --time-scale 1 \\
        --out benchmarks/results/recipes_meanflow/stability/dit_time1.jsonl

`--time-scale` and `--lr` replace the recipe's: the probe trains a copy of the recipe registered in this
process under the name `<recipe>-time-scale-<scale>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

from cmzoo.engine.recipes import Recipe
from cmzoo.registry import get_recipe, hookimpl, list_recipes, register_plugin
from cmzoo.train import Trainer, make_config


@torch.no_grad()
def velocity_rms(model: torch.nn.Module, z: torch.Tensor) -> dict[str, float]:
    """rms of u(z, 0, 1) (one step from noise) and u(z, 1, 1) (the instantaneous velocity at t = 1)."""
    one, zero = torch.ones(len(z)), torch.zeros(len(z))
    return {"u(0,1)": model(z, zero, one).pow(2).mean().sqrt().item(),
            "u(1,1)": model(z, one, one).pow(2).mean().sqrt().item()}


class ProbeRecipe:
    """An in-process plugin registering one variant of a recipe."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    @hookimpl
    def cmzoo_register_recipes(self) -> list[Recipe]:
        return [self.recipe]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="dit")
    ap.add_argument("--recipe", default="meanflow")
    ap.add_argument("--data", default="../shared/data/celeba_64.npz")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2720)
    ap.add_argument("--every", type=int, default=136)
    ap.add_argument("--lr", type=float, help="default: the recipe's")
    ap.add_argument("--time-scale", type=float, help="times enter the noise embeddings × this; default: the recipe's")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="backbone config overrides")
    ap.add_argument("--out", type=Path, required=True, help="a .jsonl, one line per measured step")
    args = ap.parse_args(argv)
    recipe = get_recipe(args.recipe)
    time_scale = recipe.time_scale if args.time_scale is None else args.time_scale
    probe = replace(recipe, name=f"{recipe.name}-time-scale-{time_scale:g}", time_scale=time_scale)
    if probe.name not in {r.name for r in list_recipes()}:
        register_plugin(ProbeRecipe(probe), probe.name)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    rows = []
    with tempfile.TemporaryDirectory() as run:
        config = make_config(backbone=args.backbone, preset="tiny", recipe=probe.name, data=args.data,
                             resolution=args.resolution, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             device="cpu", out=run, sample_every=0, checkpoint_every=0, seed=0,
                             backbone_overrides=overrides)
        trainer = Trainer(config, console=Console(quiet=True))
        z = torch.randn(64, trainer.channels, args.resolution, args.resolution,
                        generator=torch.Generator().manual_seed(1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with args.out.open("w") as log:
            for step in range(1, args.steps + 1):
                loss = trainer.train_step()
                if step % args.every == 0 or step == args.steps:
                    row = {"step": step, "time_scale": probe.time_scale, "lr": trainer.config.lr, **loss,
                           "online": velocity_rms(trainer.online, z), "ema": velocity_rms(trainer.ema, z),
                           "seconds": round(time.perf_counter() - start, 1)}
                    rows.append(row)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
    return rows


if __name__ == "__main__":
    main()
