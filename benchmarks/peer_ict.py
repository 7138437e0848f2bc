"""Peer check of cmzoo's short-run iCT: a plain improved-consistency-training loop, written from the
iCT paper with none of cmzoo's trainer or engine, trains cmzoo's own network on the same data, batch
and steps; its sample EMA is scored at the convergence protocol's points exactly as `cmzoo bench`
scores a run (500 one-step samples against the first 2,000 images, plus two steps at the end).

The loop: N(k) = min(s₀·2^⌊k/K'⌋, s₁) + 1 points of the Karras grid, the interval index drawn from the
discretised lognormal (P_mean −1.1, P_std 2.0), λ = 1/(σ_{i+1} − σ_i), pseudo-Huber with
c = 0.00054·√d, the online network under no_grad as its own target (μ = 0), Adam with a linear
warm-up, and a sample EMA.

    python benchmarks/peer_ict.py --backbone dit --steps 11120 --points 2780,5560,11120 \
        --out benchmarks/results/recipes_dit/peer_ict
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from cmzoo import create_backbone
from cmzoo.data import load_dataset, to_uint8
from cmzoo.metrics.evaluate import evaluate_images

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA, RHO = 0.002, 80.0, 0.5, 7.0


def karras_grid(n: int) -> torch.Tensor:
    """n ascending noise levels (EDM eq. 5)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return ((SIGMA_MIN ** (1 / RHO) + ramp * (SIGMA_MAX ** (1 / RHO) - SIGMA_MIN ** (1 / RHO))) ** RHO).float()


def num_scales(k: int, total: int, s0: int, s1: int) -> int:
    """iCT's N(k) (eq. 6): s₀ doubled every K' steps up to s₁, plus one."""
    k_prime = math.floor(total / (math.log2(math.floor(s1 / s0)) + 1))
    return min(s0 * 2 ** math.floor(k / k_prime), s1) + 1


def denoise(net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """f(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise) with the σ_min boundary scalings."""
    s = sigma[:, None, None, None]
    c_skip = SIGMA_DATA**2 / ((s - SIGMA_MIN) ** 2 + SIGMA_DATA**2)
    c_out = (s - SIGMA_MIN) * SIGMA_DATA / (s**2 + SIGMA_DATA**2).sqrt()
    c_in = (s**2 + SIGMA_DATA**2).rsqrt()
    return c_skip * x + c_out * net(c_in * x, 250.0 * torch.log(sigma + 1e-44))


@torch.no_grad()
def sample(net: torch.nn.Module, n: int, resolution: int, sigmas: list[float], seed: int = 0) -> torch.Tensor:
    """Consistency sampling: one step from σ_max, then re-noise to each σ in `sigmas[1:]` and denoise."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, resolution, resolution, generator=gen) * sigmas[0]
    x = denoise(net, x, torch.full((n,), sigmas[0])).clamp(-1, 1)
    for s in sigmas[1:]:
        x = x + math.sqrt(s**2 - SIGMA_MIN**2) * torch.randn(x.shape, generator=gen)
        x = denoise(net, x, torch.full((n,), s)).clamp(-1, 1)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="dit")
    ap.add_argument("--data", default="../shared/data/celeba_64.npz")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=11120)
    ap.add_argument("--points", default="2780,5560,11120", help="steps at which the sample EMA is scored")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--s0", type=int, default=10)
    ap.add_argument("--s1", type=int, default=11)
    ap.add_argument("--sample-ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--n-reference", type=int, default=2000)
    ap.add_argument("--out", default="benchmarks/results/recipes_dit/peer_ict")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = sorted(int(p) for p in args.points.split(","))

    torch.manual_seed(args.seed)
    data = load_dataset(args.data, args.resolution)
    images = data.images.float() / 127.5 - 1
    reference = data.images[: args.n_reference]
    net = create_backbone(args.backbone, preset="tiny", resolution=args.resolution).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.995))
    c = 0.00054 * math.sqrt(images[0].numel())
    rows, train_s, last = [], 0.0, 0
    for point in points:
        t0 = time.perf_counter()
        for k in range(last, point):
            sigmas = karras_grid(num_scales(k, args.steps, args.s0, args.s1))
            ln = torch.log(sigmas)
            cdf = torch.erf((ln - (-1.1)) / (math.sqrt(2) * 2.0))
            i = torch.multinomial(cdf[1:] - cdf[:-1], args.batch_size, replacement=True)
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            x0 = images[torch.randint(0, len(images), (args.batch_size,))]
            z = torch.randn_like(x0)
            online = denoise(net, x0 + sigma_next[:, None, None, None] * z, sigma_next)
            with torch.no_grad():
                target = denoise(net, x0 + sigma[:, None, None, None] * z, sigma)
            d = ((online - target).pow(2).flatten(1).sum(1) + c**2).sqrt() - c
            loss = (d / (sigma_next - sigma)).mean()
            for group in opt.param_groups:
                group["lr"] = args.lr * min(1.0, (k + 1) / args.warmup)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - args.sample_ema)
        train_s += time.perf_counter() - t0
        last = point
        sigma_lists = [[SIGMA_MAX]] + ([[SIGMA_MAX, float(karras_grid(3)[1])]] if point == points[-1] else [])
        for sl in sigma_lists:
            samples = torch.cat([sample(ema, 100, args.resolution, sl, seed=b) for b in range(args.n // 100)])
            r = evaluate_images(to_uint8(samples), reference, 64, f"{data.name}@{args.resolution}", None, "cpu")
            rows.append({"step": point, "sampling_steps": len(sl), "train_s": round(train_s, 1), "fid": r.fid,
                         "precision": r.precision, "recall": r.recall})
            print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "python benchmarks/peer_ict.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
