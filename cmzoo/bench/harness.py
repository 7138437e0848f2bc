"""`run_bench`: the figures asked for, for every backbone, written to the results folder as they come.

Each figure is a planner in :data:`PLANNERS`: from the bench's state it lists the rows it will measure,
so that the whole bench is planned before the first measurement (and the progress bar knows its
length); figures that draw a plot once everything is measured have a finisher in :data:`FINISHERS`.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.console import Console

from cmzoo.backbone import BackboneSpec
from cmzoo.bench.config import BenchConfig, make_bench_config
from cmzoo.bench.convergence import convergence_records, plot_convergence
from cmzoo.bench.efficiency import (
    function_records,
    infer_record,
    multires_record,
    params_record,
    train_record,
    warm_up_process,
)
from cmzoo.bench.flops import peak_tflops
from cmzoo.bench.page import write_bench_report
from cmzoo.bench.protocol import Bench
from cmzoo.bench.quality import plot_stability, quality_record
from cmzoo.bench.results import BenchResult, Record, environment, print_summary, write_results
from cmzoo.device import resolve_device
from cmzoo.files import check_folder
from cmzoo.metrics.inception import load_inception
from cmzoo.progress import progress_bar, stderr_console
from cmzoo.registry import get_backbone

Row = tuple[str, Callable[[], Iterable[Record]]]  # (progress label, measurement yielding records)


@dataclass
class Plan:
    """What the planners and finishers share: the bench, its backbones, the figures asked for, the result."""

    bench: Bench
    specs: list[BackboneSpec]
    figures: set[str]
    result: BenchResult
    runs: dict[str, Path] = field(default_factory=dict)  # the quality runs' directories, per backbone

    @property
    def resolutions(self) -> list[int]:
        return self.bench.config.resolutions


def guarded(plan: Plan, spec: BackboneSpec, figure: str, resolution: int,
            measure: Callable[[], Iterable[Record]]) -> Callable[[], Iterable[Record]]:
    """`measure` as a row whose failure (say, out of memory) becomes a failed record, not a crash."""
    return lambda: plan.bench.guarded(spec, figure, resolution, measure)


def params_rows(plan: Plan) -> list[Row]:
    return [(f"{spec.name} params", lambda spec=spec: [params_record(plan.bench, spec, r) for r in plan.resolutions])
            for spec in plan.specs]


def train_rows(plan: Plan) -> list[Row]:
    def warm_up() -> list[Record]:
        warm_up_process(plan.bench, plan.specs[0])  # the first timed step of a process is slow
        return []

    return [("warm-up", warm_up)] + [
        (f"{spec.name} train @ {r} px",
         guarded(plan, spec, "train", r, lambda spec=spec, r=r: [train_record(plan.bench, spec, r)]))
        for spec in plan.specs for r in plan.resolutions
    ]


def infer_rows(plan: Plan) -> list[Row]:
    """Inference at every size; the multi-resolution FPS needs it too, from fixed-size backbones (which
    run once per size) and from function backbones (one function, rendered at every size)."""
    rows: list[Row] = []
    for spec in plan.specs:
        fixed = not spec.capabilities.function_output
        if "infer" in plan.figures or fixed:
            rows += [(f"{spec.name} infer @ {r} px",
                      guarded(plan, spec, "infer", r, lambda spec=spec, r=r: [infer_record(plan.bench, spec, r)]))
                     for r in plan.resolutions]
        if not fixed:
            rows.append((f"{spec.name} function and renders", guarded(
                plan, spec, "function", plan.bench.config.multires_base,
                lambda spec=spec: function_records(plan.bench, spec))))
    return rows


def multires_rows(plan: Plan) -> list[Row]:
    return [("multi-resolution FPS",
             lambda: [multires_record(plan.bench, spec, plan.result.records) for spec in plan.specs])]


def quality_rows(plan: Plan) -> list[Row]:
    def quality(spec: BackboneSpec) -> list[Record]:
        record, plan.runs[spec.name] = quality_record(plan.bench, spec)
        return [record]

    return [(f"{spec.name} quality", lambda spec=spec: quality(spec)) for spec in plan.specs]


def convergence_rows(plan: Plan) -> list[Row]:
    return [(f"{spec.name} convergence", lambda spec=spec: convergence_records(plan.bench, spec))
            for spec in plan.specs]


# In the bench's order: the figures that ask for a planner's rows, and the planner.
PLANNERS: list[tuple[set[str], Callable[[Plan], list[Row]]]] = [
    ({"params"}, params_rows),
    ({"train"}, train_rows),
    ({"infer", "multires"}, infer_rows),
    ({"multires"}, multires_rows),
    ({"quality"}, quality_rows),
    ({"convergence"}, convergence_rows),
]
# Plots drawn once every row is measured; each returns its file, or None when there was nothing to draw.
FINISHERS: dict[str, Callable[[Plan], Path | None]] = {
    "quality": lambda plan: plot_stability(plan.runs, Path(plan.bench.config.out) / "stability.png",
                                           plan.bench.config.stability_sigma),
    "convergence": lambda plan: plot_convergence(plan.result.records, Path(plan.bench.config.out) / "convergence.png"),
}


def run_bench(config: BenchConfig | None = None, console: Console | None = None, command: str | None = None,
              **overrides: Any) -> BenchResult:
    """Measure `config.only` for `config.backbones` (overrides are BenchConfig fields); the tables
    (markdown, CSV, JSON) are rewritten in `config.out` after every measurement, the PNGs and
    report.html at the end."""
    cfg = make_bench_config(**{**(config.model_dump() if config else {}), **overrides})
    check_folder(cfg.out, "bench results folder")  # before anything is measured
    console = console or stderr_console()
    specs = [get_backbone(name) for name in cfg.backbones]
    for spec in specs:
        spec.make_config(cfg.preset)  # an unknown preset fails before anything is measured
    device = resolve_device(cfg.device)
    figures = set(cfg.only)
    peak = peak_tflops(device, cfg.precision) if figures & {"train", "infer", "multires"} else None
    command = command or "cmzoo " + shlex.join(sys.argv[1:])
    result = BenchResult([], environment(device, command, peak), cfg.model_dump())
    plan = Plan(Bench(cfg, device, peak[0] if peak else 0.0, console), specs, figures, result)
    out = Path(cfg.out)
    if figures & {"quality", "convergence"}:
        load_inception()  # missing Inception weights fail before any training

    rows = [row for asked, planner in PLANNERS if figures & asked for row in planner(plan)]
    with progress_bar("bench", "{task.fields[row]}", console) as progress:
        task = progress.add_task("bench", total=len(rows), row="")
        for label, measure in rows:
            progress.update(task, row=label)
            for r in measure():  # a generator's records are written as they are measured
                shown = f"failed: {r.error}" if r.error else f"{r.value:.4g} {r.unit}"
                console.print(f"[dim]bench[/] {r.backbone:>8} {r.figure:>8} @ {r.resolution:>9} px  {shown}")
                result.records.append(r)
                write_results(result, out, plot=False)  # the tables survive a crash; the figure is drawn once, at the end
            progress.advance(task)
    for figure, finish in FINISHERS.items():
        path = finish(plan) if figure in figures else None
        if path:
            result.files.append(path)
    result.files = write_results(result, out)
    result.files.append(write_bench_report(out))
    print_summary(result, console)
    return result
