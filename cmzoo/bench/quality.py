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


def plot_stability(bench: Bench, runs: dict[str, Path]) -> Path | None:
    """Loss and the denoising distance at `stability_sigma` vs step, one curve per quality run."""
    sigma = f"{bench.config.stability_sigma:g}"
    fig, (loss_ax, den_ax) = pyplot().subplots(1, 2, figsize=(10, 4))
    drawn = False
    for name, run_dir in runs.items():
        rows = RunDir(run_dir).read_metrics()
        losses = [r for r in rows if "loss" in r]
        dens = [r for r in rows if sigma in r.get("denoising_distance", {})]
        loss_ax.plot([r["step"] for r in losses], [r["loss"] for r in losses], label=name)
        den_ax.plot([r["step"] for r in dens], [r["denoising_distance"][sigma] for r in dens], label=name)
        drawn = drawn or bool(losses or dens)
    if not drawn:
        pyplot().close(fig)
        return None
    loss_ax.set(xlabel="step", ylabel="consistency loss (window mean)", yscale="log", title="training loss")
    den_ax.set(xlabel="step", ylabel=f"MSE of f(x₀ + σz, σ) vs x₀ at σ = {sigma}", yscale="log",
               title="denoising distance")
    loss_ax.legend(fontsize=8)
    return save_figure(fig, Path(bench.config.out) / "stability.png")
