"""Plots of training measures (matplotlib, headless)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Mapping

from cmzoo.files import writing


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path | BinaryIO, dpi: int = 100) -> None:
    """Write a matplotlib figure as PNG and close it; an OS error on a file is one OutputError line."""
    try:
        with writing(out, "figure") if isinstance(out, (str, Path)) else nullcontext():
            fig.savefig(out, dpi=dpi)
    finally:
        pyplot().close(fig)


def read_metrics(metrics_jsonl: Path, unreadable: list[int] | None = None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A line that is not a JSON object (a torn last line, left by a crash
    while writing) is skipped, and its number appended to `unreadable` for the caller to report."""
    rows = []
    for number, line in enumerate(Path(metrics_jsonl).read_bytes().splitlines(), 1):
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            row = "torn"
        if isinstance(row, dict):
            rows.append(row)
        elif row is not None and unreadable is not None:
            unreadable.append(number)
    return rows


def plot_denoising_distances(metrics_jsonl: Path, out: Path | BinaryIO) -> Path | BinaryIO | None:
    """Denoising distance vs step, one curve per σ bucket, from a run's metrics.jsonl."""
    rows = [r for r in read_metrics(metrics_jsonl) if "denoising_distance" in r]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for sigma in rows[-1]["denoising_distance"]:
        ax.plot([r["step"] for r in rows], [r["denoising_distance"].get(sigma) for r in rows], label=f"σ = {sigma}")
    ax.set(xlabel="step", ylabel="MSE of f(x₀ + σz, σ) vs x₀", yscale="log", title="total denoising distance")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, out)
    return out


def plot_training_stability(runs: Mapping[str, Path], out: Path, sigma: float = 1.0) -> Path | None:
    """Loss and the denoising distance at `sigma` vs step, one curve per run, from each metrics.jsonl."""
    plt = pyplot()
    fig, (loss_ax, den_ax) = plt.subplots(1, 2, figsize=(10, 4))
    drawn = False
    for name, path in runs.items():
        rows = read_metrics(path)
        losses = [r for r in rows if "loss" in r]
        dens = [r for r in rows if f"{sigma:g}" in r.get("denoising_distance", {})]
        loss_ax.plot([r["step"] for r in losses], [r["loss"] for r in losses], label=name)
        den_ax.plot([r["step"] for r in dens], [r["denoising_distance"][f"{sigma:g}"] for r in dens], label=name)
        drawn = drawn or bool(losses or dens)
    if not drawn:
        plt.close(fig)
        return None
    loss_ax.set(xlabel="step", ylabel="consistency loss (window mean)", yscale="log", title="training loss")
    den_ax.set(xlabel="step", ylabel=f"MSE of f(x₀ + σz, σ) vs x₀ at σ = {sigma:g}", yscale="log",
               title="denoising distance")
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)
    return out
