"""`run_bench`: the figures asked for, for every backbone, written to the results folder as they come."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from cmzoo.bench.config import BenchConfig, make_bench_config
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
from cmzoo.bench.report import BenchResult, Record, environment, print_summary, write_results
from cmzoo.plugins import get_backbone
from cmzoo.train.distributed import resolve_device


def run_bench(config: BenchConfig | None = None, console: Console | None = None, command: str | None = None,
              **overrides: Any) -> BenchResult:
    """Measure `config.only` for `config.backbones` (overrides are BenchConfig fields); the tables
    (markdown, CSV, JSON) are rewritten in `config.out` after every measurement, the PNGs at the end."""
    cfg = make_bench_config(**{**(config.model_dump() if config else {}), **overrides})
    console = console or Console(stderr=True)
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

    def add(records: list[Record]) -> None:
        for r in records:
            shown = f"failed: {r.error}" if r.error else f"{r.value:.4g} {r.unit}"
            console.print(f"[dim]bench[/] {r.backbone:>8} {r.figure:>8} @ {r.resolution:>9} px  {shown}")
        result.records.extend(records)
        write_results(result, out, plot=False)  # the tables survive a crash; the figure is drawn once, at the end

    if "params" in figures:
        for spec in specs:
            add([params_record(bench, spec, r) for r in cfg.resolutions])
    if "train" in figures:
        warm_up_process(bench, specs[0])
        for spec in specs:
            for r in cfg.resolutions:
                add(bench.guarded(spec, "train", r, lambda: [train_record(bench, spec, r)]))
    for spec in specs:
        fixed = not spec.capabilities.function_output
        if "infer" in figures or ("multires" in figures and fixed):
            for r in cfg.resolutions:
                add(bench.guarded(spec, "infer", r, lambda: [infer_record(bench, spec, r)]))
        if not fixed and figures & {"infer", "multires"}:
            add(bench.guarded(spec, "function", cfg.multires_base, lambda: function_records(bench, spec)))
    if "multires" in figures:
        add([multires_record(bench, spec, result.records) for spec in specs])
    if "quality" in figures:
        from cmzoo.bench.quality import plot_stability, quality_record
        from cmzoo.metrics.inception import load_inception

        load_inception()  # missing Inception weights fail before any training
        metrics = {}
        for spec in specs:
            record, metrics[spec.name] = quality_record(bench, spec)
            add([record])
        stability = plot_stability(bench, metrics)
        if stability:
            result.files.append(stability)
    if "convergence" in figures:
        from cmzoo.bench.convergence import convergence_records, plot_convergence
        from cmzoo.metrics.inception import load_inception

        load_inception()
        for spec in specs:
            for record in convergence_records(bench, spec):
                add([record])
        curve = plot_convergence(result.records, out / "convergence.png")
        if curve:
            result.files.append(curve)
    result.files = write_results(result, out)
    print_summary(result, console)
    return result
