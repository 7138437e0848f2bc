"""The convergence figure: one run per backbone under the protocol (`protocol.py`), scored at several
points of wall-clock training time (FID, sFID, precision, recall of one-step samples), with a two-step
FID at the end, so a short budget can be told apart from a bug."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from cmzoo.backbone import BackboneSpec
from cmzoo.bench.protocol import Bench, clear_run_dir, protocol_config, scored_record, steps_for_seconds
from cmzoo.bench.results import Record
from cmzoo.figures import plain_log_ticks, pyplot, save_figure
from cmzoo.rundir import RunDir
from cmzoo.train.trainer import train


def convergence_records(bench: Bench, spec: BackboneSpec) -> Iterator[Record]:
    """Train `spec` for max(minutes) of wall clock (K from timed steps), stopping at each point to score;
    each point's records are yielded as soon as they are measured."""
    cfg = bench.config
    minutes = sorted(cfg.minutes)
    steps_per_minute = cfg.steps_per_minute.get(spec.name) or steps_for_seconds(bench, spec, 60.0)
    total = max(1, round(minutes[-1] * steps_per_minute))
    config = protocol_config(bench, spec, total, "convergence")
    clear_run_dir(config)
    seconds = 0.0
    for i, m in enumerate(minutes):
        stop = max(1, min(total, round(m * steps_per_minute)))
        start = time.perf_counter()
        run = train(config.model_copy(update={"stop_at": stop}), resume=i > 0, console=bench.console)
        seconds += time.perf_counter() - start
        scored = [(1, f"{m:g} min")] + ([(2, f"{m:g} min, 2-step")] if m == minutes[-1] else [])
        for steps, label in scored:
            notes = {"minutes": m, "sampling_steps": steps, "step": stop, "steps": total,
                     "train_seconds": round(seconds, 1), "grid": str(_grid(RunDir(run.directory), stop, config.resolution))}
            yield scored_record(bench, spec, "convergence", label, run, notes, steps)


def _grid(run_dir: RunDir, step: int, resolution: int) -> Path:
    """The training-size sample grid the trainer wrote at `step`."""
    return run_dir.grids(resolution).get(step, {}).get((resolution, resolution), run_dir.samples)


def plot_convergence(records: list[Record], path: Path, floor: float | None = None) -> Path | None:
    """FID vs the training budget in minutes, one line per backbone (one-step), the two-step FID as a
    marker, and (given) the FID of held-out real images as the floor. The x axis is the budget each point
    stands for, not the wall clock it took: a run with pinned steps per minute may take longer on a
    shared machine, and a function backbone's pre-training is not in its budget."""
    rows = [r for r in records if r.figure == "convergence" and r.value is not None]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for backbone in dict.fromkeys(r.backbone for r in rows):
        one = [r for r in rows if r.backbone == backbone and r.notes["sampling_steps"] == 1]
        two = [r for r in rows if r.backbone == backbone and r.notes["sampling_steps"] == 2]
        line, = ax.plot([r.notes["minutes"] for r in one], [r.value for r in one], "o-", label=f"{backbone}, 1 step")
        if two:
            ax.plot([r.notes["minutes"] for r in two], [r.value for r in two], "s", color=line.get_color(),
                    markerfacecolor="none", markersize=9, label=f"{backbone}, 2 steps")
    if floor is not None:
        ax.axhline(floor, color="grey", linestyle="--", linewidth=1, label="held-out real images")
    n = rows[0].notes
    ax.set(xlabel="training budget, minutes", ylabel=f"FID ({n['n_samples']} samples vs {n['n_reference']})",
           xscale="log", yscale="log", title=f"convergence on {n['data']}")
    plain_log_ticks(ax, sorted({r.notes["minutes"] for r in rows}), [v for v in (floor, *(r.value for r in rows)) if v])
    ax.legend(fontsize=8)
    return save_figure(fig, path)
