"""Why two-step sampling helps one backbone and hurts another: the one-step denoiser f(x₀ + σz, σ) of
trained runs, measured per σ on real images.

For each σ and run it reports the denoising distance E‖f − x₀‖² per pixel; the share of that error
above half the grid's Nyquist frequency (radial, by FFT); and the error's regression on the injected
noise, a = ⟨f − x₀, z⟩ / ⟨z, z⟩, beside c_skip(σ)·σ — the noise that f passes straight through from
its input and that F must cancel pixel by pixel. A network that cancels it has a ≈ 0; one that
cannot (a smooth image function) has a ≈ c_skip·σ.

    python benchmarks/multistep_diagnosis.py --run func=RUN_DIR --run dit=RUN_DIR \\
        --data ../shared/data/celeba_64.npz --out benchmarks/results/multistep_diagnosis.md
"""

from __future__ import annotations

import argparse
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

from cmzoo.data import load_dataset
from cmzoo.run import Run, load_run

SIGMAS = (0.02, 0.1, 0.3, 0.66, 1.0, 2.0, 5.0, 20.0, 80.0)


def high_frequency_share(error: torch.Tensor) -> float:
    """The share of the error's energy at radial frequencies above half the grid's Nyquist frequency."""
    h, w = error.shape[-2:]
    energy = torch.fft.fft2(error.double()).abs().pow(2)
    fy, fx = torch.fft.fftfreq(h).abs(), torch.fft.fftfreq(w).abs()  # cycles per pixel, Nyquist = 0.5
    high = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() > 0.25
    return (energy[..., high].sum() / energy.sum()).item()


@torch.no_grad()
def diagnose(run: Run, x0: torch.Tensor, sigma: float, seed: int) -> dict[str, float]:
    """Denoising distance, its high-frequency share, and the error's regression on the noise at σ."""
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    sig = torch.full((len(x0),), sigma)
    error = run.model(x0 + sigma * z, sig) - x0
    skip, _, _ = run.model.scalings(sig, x0.ndim)
    return {
        "sigma": sigma,
        "distance": error.pow(2).mean().item(),
        "high_share": high_frequency_share(error),
        "noise_coef": ((error * z).sum() / z.pow(2).sum()).item(),
        "skip_sigma": (skip.flatten()[0] * sigma).item(),
    }


def table(results: dict[str, list[dict[str, float]]]) -> str:
    names = list(results)
    head = "| σ | c_skip·σ | " + " | ".join(f"{n}: distance | {n}: high-freq share | {n}: a" for n in names) + " |"
    rule = "|---:|---:|" + "---:|---:|---:|" * len(names)
    rows = []
    for i, sigma in enumerate(SIGMAS):
        cells = [f"{sigma:g}", f"{results[names[0]][i]['skip_sigma']:.3f}"]
        for n in names:
            r = results[n][i]
            cells += [f"{r['distance']:.4f}", f"{r['high_share']:.2f}", f"{r['noise_coef']:.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR")
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=256, help="images, the data set's last ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    runs = {name: load_run(path) for name, _, path in (r.partition("=") for r in args.run)}
    resolution = next(iter(runs.values())).resolution
    data = load_dataset(args.data, resolution)
    x0, _ = data.batch(torch.arange(len(data) - args.n, len(data)))
    results = {name: [diagnose(run, x0, s, args.seed + i) for i, s in enumerate(SIGMAS)] for name, run in runs.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = (f"`python benchmarks/multistep_diagnosis.py {' '.join('--run ' + r for r in args.run)} --data {args.data} "
              f"--n {args.n}` — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
              f"torch {torch.__version__}, git {commit}; the last {args.n} images at {resolution} px; "
              + ", ".join(f"{n}: step {r.step}, boundary scale {r.model.boundary_scale:g}" for n, r in runs.items()))
    text = header + "\n\n" + table(results) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
