"""Plots of training measures (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_denoising_distances(metrics_jsonl: Path, out: Path) -> Path | None:
    """Denoising distance vs step, one curve per σ bucket, from a run's metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "denoising_distance" in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for sigma in rows[-1]["denoising_distance"]:
        ax.plot([r["step"] for r in rows], [r["denoising_distance"].get(sigma) for r in rows], label=f"σ = {sigma}")
    ax.set(xlabel="step", ylabel="MSE of f(x₀ + σz, σ) vs x₀", yscale="log", title="total denoising distance")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
