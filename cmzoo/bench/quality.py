"""The fixed-budget quality protocol: every backbone trains on the same data with the same recipe,
batch size and budget (steps, or wall-clock seconds turned into steps per backbone), then is scored
with `cmzoo eval`; the loss and denoising-distance curves of all runs share one figure."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from cmzoo.backbone import BackboneSpec
from cmzoo.bench.efficiency import Bench
from cmzoo.bench.measure import time_call
from cmzoo.bench.report import Record
from cmzoo.config import TrainConfig, make_config
from cmzoo.metrics.evaluate import EvalResult
from cmzoo.scoring import evaluate_run
from cmzoo.figures import pyplot, save_figure
from cmzoo.rundir import RunDir
from cmzoo.train.trainer import Trainer, train


def quality_train_config(bench: Bench, spec: BackboneSpec, steps: int) -> TrainConfig:
    """The shared protocol, with only the backbone (and, for a wall-clock budget, K) differing."""
    cfg = bench.config
    protocol = dict(
        backbone=spec.name, preset=cfg.preset, data=cfg.data, resolution=cfg.quality_size, steps=steps,
        batch_size=cfg.quality_batch_size, recipe=cfg.recipe, precision=cfg.precision, device=str(bench.device),
        seed=cfg.seed, out=str(Path(cfg.out) / "quality" / spec.name), sample_every=0, checkpoint_every=0,
        denoise_every=max(1, steps // 20), log_every=max(1, steps // 100),
    )
    return make_config(**{**protocol, **cfg.train_overrides})


def clear_run_dir(config: TrainConfig) -> None:
    """Remove what an earlier bench left in the run directory of `config`: a new run would append its
    metrics to the old metrics.jsonl and write its grids beside the old ones."""
    shutil.rmtree(config.out, ignore_errors=True)


def steps_for_seconds(bench: Bench, spec: BackboneSpec, seconds: float) -> int:
    """How many training steps of this backbone fit in `seconds`, from a few timed steps."""
    trainer = Trainer(quality_train_config(bench, spec, bench.config.steps), console=Console(quiet=True))
    step_s = time_call(trainer.train_step, bench.device, warmup=1, repeats=3).median
    return max(1, int(seconds / step_s))


def quality_record(bench: Bench, spec: BackboneSpec) -> tuple[Record, Path]:
    """Train one backbone under the protocol and score its one-step samples; (record, metrics.jsonl)."""
    cfg = bench.config
    steps = steps_for_seconds(bench, spec, cfg.seconds) if cfg.seconds else cfg.steps
    config = quality_train_config(bench, spec, steps)
    clear_run_dir(config)
    start = time.perf_counter()
    run = train(config, console=bench.console)
    train_seconds = time.perf_counter() - start
    result = evaluate_run(run, cfg.data or "shapes", n=cfg.n_eval, n_reference=cfg.n_reference)
    record = bench.record(
        spec, "quality", cfg.quality_size, result.fid, "FID", batch_size=cfg.quality_batch_size,
        notes={**score_notes(result), "steps": steps, "train_seconds": round(train_seconds, 1), "data": result.reference_name,
               "recipe": run.config.recipe, "run": str(run.directory)},
    )
    return record, run.directory / "metrics.jsonl"


def score_notes(result: EvalResult) -> dict[str, object]:
    """The numbers of an evaluation beside its FID (the record's value), for a record's notes."""
    return {k: v for k, v in asdict(result).items() if k not in ("fid", "reference_name", "kid_subset_size")}


def plot_stability(bench: Bench, metrics: dict[str, Path]) -> Path | None:
    """Loss and the denoising distance at `stability_sigma` vs step, one curve per quality run."""
    sigma = f"{bench.config.stability_sigma:g}"
    fig, (loss_ax, den_ax) = pyplot().subplots(1, 2, figsize=(10, 4))
    drawn = False
    for name, path in metrics.items():
        rows = RunDir(path.parent).read_metrics()
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
