"""The fixed-budget quality figure: every backbone trains under the protocol (`protocol.py`) on one
budget (steps, or wall-clock seconds turned into steps per backbone), then its one-step samples are
scored; the loss and denoising-distance curves of all runs share one figure."""

from __future__ import annotations

import time
from pathlib import Path

from cmzoo.backbone import BackboneSpec
from cmzoo.bench.protocol import Bench, clear_run_dir, protocol_config, scored_record, steps_for_seconds
from cmzoo.bench.results import Record
from cmzoo.figures import pyplot, save_figure
from cmzoo.rundir import RunDir
from cmzoo.train.trainer import train


def quality_record(bench: Bench, spec: BackboneSpec) -> tuple[Record, Path]:
    """Train one backbone under the protocol and score its one-step samples; (record, its run directory)."""
    cfg = bench.config
    steps = steps_for_seconds(bench, spec, cfg.seconds) if cfg.seconds else cfg.steps
    config = protocol_config(bench, spec, steps, "quality")
    clear_run_dir(config)
    start = time.perf_counter()
    run = train(config, console=bench.console)
    train_seconds = round(time.perf_counter() - start, 1)
    notes = {"steps": steps, "train_seconds": train_seconds, "run": str(run.directory)}
    record = scored_record(bench, spec, "quality", cfg.quality_size, run, notes)
    return record, run.directory


def plot_stability(runs: dict[str, Path], path: Path, sigma: float | None = 1.0,
                   per_budget: bool = False) -> Path | None:
    """Loss and the denoising distance vs step, one curve per run: at one noise level `sigma`, or summed
    over every logged level (None, the paper's total denoising distance). `per_budget` puts each run's
    step over its K on the x axis, so runs of one budget but different batches share it."""
    fig, (loss_ax, den_ax) = pyplot().subplots(1, 2, figsize=(10, 4))
    drawn = False
    for name, run_dir in runs.items():
        rows = RunDir(run_dir).read_metrics()
        total = RunDir(run_dir).read_config().steps if per_budget else 1
        losses = [r for r in rows if "loss" in r]
        dens = [(r["step"], _distance(r["denoising_distance"], sigma)) for r in rows if "denoising_distance" in r]
        dens = [(step, d) for step, d in dens if d is not None]
        loss_ax.plot([r["step"] / total for r in losses], [r["loss"] for r in losses], label=name)
        den_ax.plot([step / total for step, _ in dens], [d for _, d in dens], "o-", markersize=3, label=name)
        drawn = drawn or bool(losses or dens)
    if not drawn:
        pyplot().close(fig)
        return None
    x = "share of the training budget" if per_budget else "step"
    where = "summed over σ" if sigma is None else f"at σ = {sigma:g}"
    loss_ax.set(xlabel=x, ylabel="consistency loss (window mean)", yscale="log", title="training loss")
    den_ax.set(xlabel=x, ylabel=f"MSE of f(x₀ + σz, σ) vs x₀, {where}", yscale="log", title="denoising distance")
    loss_ax.legend(fontsize=8)
    return save_figure(fig, path)


def _distance(by_sigma: dict[str, float], sigma: float | None) -> float | None:
    """The logged denoising distance at `sigma` (None where it was not logged), or the sum over all levels."""
    return sum(by_sigma.values()) if sigma is None else by_sigma.get(f"{sigma:g}")
