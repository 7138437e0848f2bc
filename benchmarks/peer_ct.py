"""Peer check of cmzoo's trainer: the same network, data, steps and curriculum trained by a minimal
consistency-training loop written directly from the reference code, with none of cmzoo's trainer or
engine — then both scored with one sampler and one FID.

The peer loop follows openai/consistency_models: `cm/karras_diffusion.py` `consistency_losses`
(uniform interval index on a descending Karras grid, x_{t2} by the Euler step towards x₀ — that is,
x₀ + t₂·z with the same z — shared dropout state, stop-grad target at t₂, `mean_flat` l2 loss with
uniform weights), `denoise` (boundary-condition scalings, c_noise = 250·ln σ), `cm/script_util.py`
`create_ema_and_scales_fn` ("adaptive" target EMA, "progressive" N(k)) and `cm/train_util.py`
(RAdam step, then the sample EMA and the target EMA). A difference beyond the seed-to-seed spread
would point at a bug in cmzoo.

    python benchmarks/peer_ct.py --steps 600 --seeds 0 1 --out benchmarks/results/peer_ct
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from cmzoo import create_backbone
from cmzoo.data import load_dataset, to_uint8
from cmzoo.metrics.evaluate import evaluate_images
from cmzoo.train import train

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA, RHO = 0.002, 80.0, 0.5, 7.0


def scales_and_target_ema(step: int, total_steps: int, start_scales: int, end_scales: int, start_ema: float):
    """`create_ema_and_scales_fn`, target_ema_mode 'adaptive', scale_mode 'progressive'."""
    scales = np.ceil(np.sqrt((step / total_steps) * ((end_scales + 1) ** 2 - start_scales**2) + start_scales**2) - 1)
    scales = max(int(scales), 1)
    c = -np.log(start_ema) * start_scales
    return scales + 1, float(np.exp(-c / scales))


def karras_t(indices: torch.Tensor, num_scales: int) -> torch.Tensor:
    """σ at `indices` of the descending Karras grid, as `consistency_losses` computes t and t2."""
    hi, lo = SIGMA_MAX ** (1 / RHO), SIGMA_MIN ** (1 / RHO)
    return (hi + indices / (num_scales - 1) * (lo - hi)) ** RHO


def denoise(model: torch.nn.Module, x_t: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """`KarrasDenoiser.denoise` with `get_scalings_for_boundary_condition`."""
    s = sigmas[:, None, None, None]
    c_skip = SIGMA_DATA**2 / ((s - SIGMA_MIN) ** 2 + SIGMA_DATA**2)
    c_out = (s - SIGMA_MIN) * SIGMA_DATA / (s**2 + SIGMA_DATA**2) ** 0.5
    c_in = 1 / (s**2 + SIGMA_DATA**2) ** 0.5
    return c_out * model(c_in * x_t, 1000 * 0.25 * torch.log(sigmas + 1e-44)) + c_skip * x_t


def peer_train(images: torch.Tensor, steps: int, batch: int, lr: float, sample_ema: float, seed: int,
               s0: int, s1: int, mu0: float) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_backbone("func", preset="tiny", resolution=images.shape[-1])  # the same init as cmzoo's trainer
    target = create_backbone("func", preset="tiny", resolution=images.shape[-1]).requires_grad_(False)
    ema = create_backbone("func", preset="tiny", resolution=images.shape[-1]).requires_grad_(False)
    target.load_state_dict(model.state_dict())
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.RAdam(model.parameters(), lr=lr)
    model.train()
    target.train()
    for step in range(steps):
        num_scales, target_ema = scales_and_target_ema(step, steps, s0, s1, mu0)
        x_start = images[torch.randint(0, len(images), (batch,))]
        noise = torch.randn_like(x_start)
        indices = torch.randint(0, num_scales - 1, (batch,))
        t, t2 = karras_t(indices, num_scales), karras_t(indices + 1, num_scales)
        x_t = x_start + noise * t[:, None, None, None]
        dropout_state = torch.get_rng_state()
        distiller = denoise(model, x_t, t)
        x_t2 = (x_t + (x_t - x_start) / t[:, None, None, None] * (t2 - t)[:, None, None, None]).detach()  # Euler step
        torch.set_rng_state(dropout_state)
        with torch.no_grad():
            distiller_target = denoise(target, x_t2, t2)
        loss = ((distiller - distiller_target) ** 2).flatten(1).mean(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for rate, avg in ((sample_ema, ema), (target_ema, target)):
                for p_avg, p in zip(avg.parameters(), model.parameters()):
                    p_avg.mul_(rate).add_(p, alpha=1 - rate)
    return ema.eval()


@torch.no_grad()
def one_step_samples(net: torch.nn.Module, n: int, resolution: int, seed: int) -> torch.Tensor:
    z = torch.randn(n, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    return denoise(net.eval(), z * SIGMA_MAX, torch.full((n,), SIGMA_MAX)).clamp(-1, 1)


def score(net: torch.nn.Module, reference: torch.Tensor, n: int, resolution: int) -> dict:
    r = evaluate_images(to_uint8(one_step_samples(net, n, resolution, seed=12345)), reference, 64, "shapes", None, "cpu")
    return {"fid": r.fid, "sfid": r.sfid, "precision": r.precision, "recall": r.recall,
            "n_samples": r.n_samples, "n_reference": r.n_reference}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sample-ema", type=float, default=0.995)
    ap.add_argument("--n", type=int, default=300, help="samples and reference images scored")
    ap.add_argument("--out", default="benchmarks/results/peer_ct")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resolution, s0, s1, mu0 = 32, 2, 6, 0.9  # cmzoo's ct-short: the ct curriculum with s₁ = 6
    data = load_dataset("shapes", resolution, 2048)
    images, _ = data.batch(torch.arange(len(data)))
    reference = data.images[: args.n]
    rows = []
    for seed in args.seeds:
        shutil.rmtree(out / f"cmzoo_seed{seed}", ignore_errors=True)  # a rerun starts this seed's run over
        t0 = time.perf_counter()
        run = train(backbone="func", preset="tiny", recipe="ct-short", distance="l2", steps=args.steps,
                        batch_size=args.batch_size, lr=args.lr, sample_ema=args.sample_ema, seed=seed,
                        out=str(out / f"cmzoo_seed{seed}"), sample_every=0, checkpoint_every=0, denoise_every=0,
                        pretrain_steps=0)
        t1 = time.perf_counter()
        peer = peer_train(images, args.steps, args.batch_size, args.lr, args.sample_ema, seed, s0, s1, mu0)
        t2 = time.perf_counter()
        for name, net, seconds in (("cmzoo trainer", run.model.net, t1 - t0), ("peer loop", peer, t2 - t1)):
            rows.append({"loop": name, "seed": seed, "train_s": seconds, **score(net, reference, args.n, resolution)})
            print(json.dumps(rows[-1]))
    meta = {"command": f"python benchmarks/peer_ct.py --steps {args.steps} --seeds {' '.join(map(str, args.seeds))}",
            "date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}", "steps": args.steps,
            "batch_size": args.batch_size, "lr": args.lr, "sample_ema": args.sample_ema,
            "recipe": "ct curriculum s0 2 → s1 6, μ0 0.9, l2, RAdam", "data": "shapes[2048] at 32 px"}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["# Peer check: cmzoo's trainer vs a loop written from the reference code", "",
             f"`{meta['command']}` — {meta['date']}, {meta['machine']}", "",
             f"func/tiny on {meta['data']}, {args.steps} steps, batch {args.batch_size}, {meta['recipe']}, "
             f"lr {args.lr}, sample EMA {args.sample_ema}. One-step samples from the sample EMA, same noise for "
             f"both, scored against the first {args.n} training images.", "",
             "| loop | seed | train s | FID | sFID | precision | recall |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['loop']} | {r['seed']} | {r['train_s']:.0f} | {r['fid']:.1f} | {r['sfid']:.1f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} |" for r in rows]
    for name in ("cmzoo trainer", "peer loop"):
        fids = [r["fid"] for r in rows if r["loop"] == name]
        lines.append(f"\n{name}: mean FID {np.mean(fids):.1f} (spread {np.ptp(fids):.1f} over {len(fids)} seeds)")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
