"""Reconstruction ablation for `func`: held-out PSNR at 32 px as reconstruction pre-training runs.

Each variant is the `tiny` preset with config overrides (and optionally another lr / batch), trained
with ``cmzoo.train.pretrain.pretrain_steps`` on the first N rows of ``celeba_64.npz`` at 32 px (or,
with ``--data shapes``, the first N images of the `shapes` set); every ``--every`` steps the model
reconstructs T held-out images (the last T rows; shapes 5000…5000+T−1) and the mean PSNR is
recorded. One JSON line per variant goes to ``--out``; ``--table`` turns such a file into markdown.

    python benchmarks/reconstruction_ablation.py --variant base --variant groups64:n_groups=64 \\
        --steps 600 --out benchmarks/results/reconstruction_ablation.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import cmzoo
from cmzoo.train.pretrain import held_out_psnr, pretrain_steps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from superres import celeba_data, parse_override, shapes_data  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value,…' → (name, overrides); keys lr, batch_size, preset,
    coords_noise (0 / 1: variational coordinates in the loss) and decay (the fraction of the steps
    over which lr falls linearly to 0) are training options."""
    name, _, rest = text.partition(":")
    return name, dict(parse_override(kv) for kv in rest.split(",") if kv)


def run_variant(name: str, options: dict, train: torch.Tensor, test: torch.Tensor, steps: int, every: int,
                seed: int) -> dict:
    options = dict(options)
    lr = float(options.pop("lr", 1e-3))
    batch_size = int(options.pop("batch_size", 32))
    preset = str(options.pop("preset", "tiny"))
    coords_noise = bool(options.pop("coords_noise", True))
    decay = float(options.pop("decay", 0.0))
    torch.manual_seed(seed)
    net = cmzoo.create_backbone("func", preset=preset, resolution=32, **options)
    params = sum(p.numel() for n, p in net.named_parameters() if not n.startswith(("encoder.", "t_embedder.")))
    curve, started, clock = [], time.perf_counter(), [0.0]

    def on_step(step: int, loss: float) -> None:
        if step % every == 0:
            clock[0] = time.perf_counter() - started
            curve.append({"step": step, "seconds": round(clock[0], 1), "train_mse": loss,
                          "psnr": round(held_out_psnr(net, test)["psnr"], 3)})
            print(f"[{name}] step {step} {clock[0]:.0f}s psnr {curve[-1]['psnr']:.2f}", flush=True)

    pretrain_steps(net, train, steps, lr=lr, batch_size=batch_size, generator=torch.Generator().manual_seed(seed),
                   on_step=on_step, coords_noise=coords_noise, decay=decay)
    return {"variant": name, "overrides": options, "preset": preset, "lr": lr, "batch_size": batch_size,
            "coords_noise": coords_noise, "decay": decay,
            "params": params, "steps": steps, "curve": curve, "threads": torch.get_num_threads()}


def table(records: list[dict]) -> str:
    steps = sorted({c["step"] for r in records for c in r["curve"]})
    head = "| variant | overrides | params | s/step | " + " | ".join(f"{s}" for s in steps) + " |"
    lines = [head, "|" + "---|" * 4 + "---:|" * len(steps)]
    for r in records:
        at = {c["step"]: c["psnr"] for c in r["curve"]}
        last = r["curve"][-1]
        shown = {**r["overrides"], "lr": r["lr"], "batch": r["batch_size"]}
        if not r.get("coords_noise", True):
            shown["coords_noise"] = 0
        if r.get("decay"):
            shown["decay"] = r["decay"]
        opts = ", ".join(f"{k}={v}" for k, v in shown.items())
        lines.append(f"| {r['variant']} | {opts} | {r['params']:,} | {last['seconds'] / last['step']:.3f} | "
                     + " | ".join(f"{at[s]:.2f}" if s in at else "" for s in steps) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", action="append", type=parse_variant, default=[], metavar="NAME:K=V,…")
    p.add_argument("--data", choices=("celeba", "shapes"), default="celeba")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--train", type=int, default=7500)
    p.add_argument("--test", type=int, default=256)
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path, metavar="JSONL", help="print the markdown table of a results file")
    args = p.parse_args(argv)
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return
    torch.set_num_threads(args.threads)
    if args.data == "shapes":
        train, _, tests = shapes_data(args.train, args.test)
    else:
        train, _, tests = celeba_data(args.data_dir, args.train, args.test)
    test = tests["shapes" if args.data == "shapes" else "celeba64"]["input"]
    for name, options in args.variant:
        record = run_variant(name, options, train, test, args.steps, args.every, args.seed)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
