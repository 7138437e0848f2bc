"""`run_bench`: the figures asked for, for every backbone, written to the results folder as they come."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.console import Console

from cmzoo.backbone import BackboneSpec
from cmzoo.bench.config import BenchConfig, make_bench_config
from cmzoo.bench.convergence import convergence_records, plot_convergence
from cmzoo.bench.efficiency import (
    Bench,
    function_records,
    infer_record,
    multires_record,
    params_record,
    train_record,
    warm_up_process,
)
from cmzoo.bench.flops import peak_tflops
from cmzoo.bench.page import write_bench_report
from cmzoo.bench.quality import plot_stability, quality_record
from cmzoo.bench.report import BenchResult, Record, environment, print_summary, write_results
from cmzoo.device import resolve_device
from cmzoo.metrics.inception import load_inception
from cmzoo.plugins import get_backbone
from cmzoo.progress import progress_bar, stderr_console


def run_bench(config: BenchConfig | None = None, console: Console | None = None, command: str | None = None,
              **overrides: Any) -> BenchResult:
    """Measure `config.only` for `config.backbones` (overrides are BenchConfig fields); the tables
    (markdown, CSV, JSON) are rewritten in `config.out` after every measurement, the PNGs and
    report.html at the end."""
    cfg = make_bench_config(**{**(config.model_dump() if config else {}), **overrides})
    console = console or stderr_console()
    specs = [get_backbone(name) for name in cfg.backbones]
    for spec in specs:
        spec.make_config(cfg.preset)  # an unknown preset fails before anything is measured
    device = resolve_device(cfg.device)
    figures = set(cfg.only)
    timed = bool(figures & {"train", "infer", "multires"})
    peak = peak_tflops(device, cfg.precision) if timed else None
    bench = Bench(cfg, device, peak[0] if peak else 0.0, console)
    command = command or "cmzoo " + shlex.join(sys.argv[1:])
    result = BenchResult([], environment(device, command, peak), cfg.model_dump())
    out = Path(cfg.out)

    def add(records: Iterable[Record]) -> None:
        for r in records:  # a generator's records are written as they are measured
            shown = f"failed: {r.error}" if r.error else f"{r.value:.4g} {r.unit}"
            console.print(f"[dim]bench[/] {r.backbone:>8} {r.figure:>8} @ {r.resolution:>9} px  {shown}")
            result.records.append(r)
            write_results(result, out, plot=False)  # the tables survive a crash; the figure is drawn once, at the end

    # Every row of the bench, in order, planned first so that the progress bar knows its length.
    rows: list[tuple[str, Callable[[], Iterable[Record]]]] = []
    if "params" in figures:
        rows += [(f"{spec.name} params", lambda spec=spec: [params_record(bench, spec, r) for r in cfg.resolutions])
                 for spec in specs]
    if "train" in figures:

        def warm_up() -> list[Record]:
            warm_up_process(bench, specs[0])
            return []

        rows.append(("warm-up", warm_up))
        rows += [(f"{spec.name} train @ {r} px",
                  lambda spec=spec, r=r: bench.guarded(spec, "train", r, lambda: [train_record(bench, spec, r)]))
                 for spec in specs for r in cfg.resolutions]
    for spec in specs:
        fixed = not spec.capabilities.function_output
        if "infer" in figures or ("multires" in figures and fixed):
            rows += [(f"{spec.name} infer @ {r} px",
                      lambda spec=spec, r=r: bench.guarded(spec, "infer", r, lambda: [infer_record(bench, spec, r)]))
                     for r in cfg.resolutions]
        if not fixed and figures & {"infer", "multires"}:
            rows.append((f"{spec.name} function and renders", lambda spec=spec: bench.guarded(
                spec, "function", cfg.multires_base, lambda: function_records(bench, spec))))
    if "multires" in figures:
        rows.append(("multi-resolution FPS", lambda: [multires_record(bench, spec, result.records) for spec in specs]))
    metrics: dict[str, Path] = {}
    if figures & {"quality", "convergence"}:
        load_inception()  # missing Inception weights fail before any training
    if "quality" in figures:
        def quality(spec: BackboneSpec) -> list[Record]:
            record, metrics[spec.name] = quality_record(bench, spec)
            return [record]

        rows += [(f"{spec.name} quality", lambda spec=spec: quality(spec)) for spec in specs]
    if "convergence" in figures:
        rows += [(f"{spec.name} convergence", lambda spec=spec: convergence_records(bench, spec)) for spec in specs]

    with progress_bar("bench", "{task.fields[row]}", console) as progress:
        task = progress.add_task("bench", total=len(rows), row="")
        for label, measure in rows:
            progress.update(task, row=label)
            add(measure())
            progress.advance(task)
    if "quality" in figures:
        stability = plot_stability(bench, metrics)
        if stability:
            result.files.append(stability)
    if "convergence" in figures:
        curve = plot_convergence(result.records, out / "convergence.png")
        if curve:
            result.files.append(curve)
    result.files = write_results(result, out)
    result.files.append(write_bench_report(out))
    print_summary(result, console)
    return result
