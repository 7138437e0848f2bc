"""Figures (matplotlib on the file-only Agg backend): how every figure is laid out and written, and the
denoising-distance plot that training and the run report share."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Iterable, TypeVar

from cmzoo.files import writing

Out = TypeVar("Out", Path, BinaryIO)


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panels(n: int, width: float, height: float, cols: int = 3) -> tuple[Any, list[Any]]:
    """A figure of `n` panels of width × height inches, at most `cols` a row: (figure, the n axes)."""
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def save_figure(fig: Any, out: Out, dpi: int = 100) -> Out:
    """Lay out a figure, write it as PNG to `out` (a path or a binary file) and close it; returns `out`.
    An OS error on a path is one OutputError line."""
    try:
        fig.tight_layout()
        with writing(out, "figure") if isinstance(out, (str, Path)) else nullcontext():
            fig.savefig(out, dpi=dpi)
    finally:
        pyplot().close(fig)
    return out


def plain_log_ticks(ax: Any, xs: list[float], values: list[float]) -> None:
    """Axes labelled with the points `xs` and round values (FIDs) rather than powers of ten."""
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    lo, hi = min(values), max(values)
    ax.set_yticks([t for t in (10, 20, 30, 50, 75, 100, 150, 200, 300, 500) if lo * 0.8 <= t <= hi * 1.25])
    ax.yaxis.set_major_formatter("{x:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())


def plot_denoising_distances(records: Iterable[dict[str, Any]], out: Out) -> Out | None:
    """Denoising distance vs step, one curve per σ bucket, from a run's metrics records."""
    rows = [r for r in records if "denoising_distance" in r]
    if not rows:
        return None
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for sigma in rows[-1]["denoising_distance"]:
        ax.plot([r["step"] for r in rows], [r["denoising_distance"].get(sigma) for r in rows], label=f"σ = {sigma}")
    ax.set(xlabel="step", ylabel="MSE of f(x₀ + σz, σ) vs x₀", yscale="log", title="total denoising distance")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, out)
