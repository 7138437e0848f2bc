"""Benchmark records and the result tables written from them: a rich/markdown summary (rows = backbones,
columns = figures), the detailed rows as markdown, CSV and JSON, and the efficiency bar charts."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from rich.console import Console
from rich.table import Table

from cmzoo.files import write_text
from cmzoo.figures import panels, save_figure

# Paper Table 2: multi-resolution sampling FPS (32 + 64 + 128 px) on CelebA 64.
PAPER_MULTIRES_FPS = {"unet": 83.64, "uvit": 83.58, "dit": 96.61, "func": 447.02}


@dataclass
class Record:
    """One measurement: `value` in `unit` of `figure` for `backbone` at `resolution`."""

    backbone: str
    figure: str  # params | train | infer | function | render | multires | quality
    resolution: str  # "64", or "32+64+128" for multi-resolution figures
    value: float | None
    unit: str
    preset: str
    device: str
    precision: str = "fp32"
    compile: bool = False
    batch_size: int | None = None
    median_s: float | None = None  # per timed call (a step, a batch)
    spread: float | None = None  # (max − min) / median over the repetitions
    repeats: int | None = None
    gflop_per_image: float | None = None
    peak_fraction: float | None = None  # achieved FLOP/s over the device's peak
    peak_memory_mib: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BenchResult:
    records: list[Record]
    environment: dict[str, Any]
    config: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    def find(self, backbone: str, figure: str, resolution: str | int | None = None) -> Record | None:
        for r in self.records:
            if r.backbone == backbone and r.figure == figure and (resolution is None or r.resolution == str(resolution)):
                return r
        return None


def environment(device: torch.device, command: str, peak: tuple[float, str] | None = None) -> dict[str, Any]:
    """Machine, software and date of a benchmark, written beside its numbers."""
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }
    if peak is not None:
        env["peak_tflops"], env["peak_source"] = round(peak[0], 4), peak[1]
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# ---- summary: rows = backbones, columns = figures -----------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value == 0 or abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{max(digits - 2, 0)}f}"
    return f"{value:.{digits}g}"


def _get(record: Record, attr: str) -> float | None:
    """A record's attribute, or 'notes.key' for one of its notes."""
    if attr.startswith("notes."):
        return record.notes.get(attr.removeprefix("notes."))
    return getattr(record, attr)


def _cell(records: list[Record], attr: str = "value", digits: int = 3) -> str:
    """Values across resolutions joined as 'a / b / c' (an error shows as 'failed')."""
    return " / ".join("failed" if r.error else _fmt(_get(r, attr), digits) for r in records)


SUMMARY_COLUMNS: list[tuple[str, str, str, int]] = [  # (figure, header, record attribute, digits)
    ("params", "params (M)", "value", 5),
    ("params", "GFLOP/img", "gflop_per_image", 3),
    ("train", "train s/step", "median_s", 3),
    ("train", "train peak MiB", "peak_memory_mib", 4),
    ("infer", "1-step img/s", "value", 3),
    ("infer", "infer peak MiB", "peak_memory_mib", 4),
    ("render", "render ms/img", "value", 3),
    ("multires", "multi-res FPS", "value", 4),
    ("quality", "FID", "value", 4),
    ("quality", "sFID", "notes.sfid", 4),
    ("quality", "precision", "notes.precision", 3),
    ("quality", "recall", "notes.recall", 3),
    ("quality", "steps", "notes.steps", 6),
    ("convergence", "FID", "value", 4),
    ("convergence", "precision", "notes.precision", 3),
]


def summary_table(records: list[Record]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per backbone, one column per measured figure, its points as 'a / b / c' (the
    resolutions, or the convergence points), '—' where a backbone was not measured at one."""
    backbones = list(dict.fromkeys(r.backbone for r in records))
    resolutions = list(dict.fromkeys(r.resolution for r in records if r.figure in ("params", "train", "infer")))
    columns = [c for c in SUMMARY_COLUMNS if any(r.figure == c[0] for r in records)]
    points = {figure: _points(records, figure) for figure, *_ in columns}
    headers = ["backbone"] + [
        f"{header} @ {'/'.join(resolutions)}" if figure in ("params", "train", "infer", "render")
        else f"{header} @ {' / '.join(points[figure])}" if figure == "convergence" else header
        for figure, header, _, _ in columns
    ]
    rows = []
    for b in backbones:
        row = [b]
        for figure, _, attr, digits in columns:
            found = {r.resolution: r for r in records if r.backbone == b and r.figure == figure}
            row.append(" / ".join(_cell([found[p]], attr, digits) if p in found else "—" for p in points[figure])
                       if found else "—")
        rows.append(row)
    return headers, rows


def _points(records: list[Record], figure: str) -> list[str]:
    """The points a figure was measured at over all backbones; convergence's one-step points by minutes, then
    the two-step ones, so that a backbone scored at fewer points lines up with the others."""
    found = [r for r in records if r.figure == figure]
    points = list(dict.fromkeys(r.resolution for r in found))
    if figure == "convergence":
        order = {r.resolution: (r.notes.get("sampling_steps", 1), r.notes.get("minutes", 0.0)) for r in found}
        points.sort(key=order.__getitem__)
    return points


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def rich_table(headers: list[str], rows: list[list[str]], title: str) -> Table:
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


DETAIL_HEADERS = ["backbone", "figure", "px", "value", "median s", "spread", "GFLOP/img", "% of peak", "peak MiB",
                  "batch", "device", "precision", "compile", "notes"]


def detail_rows(records: Iterable[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        notes = "; ".join(f"{k}={_fmt(v, 4) if isinstance(v, float) else v}" for k, v in r.notes.items())
        rows.append([
            r.backbone, r.figure, r.resolution,
            f"failed: {r.error}" if r.error else f"{_fmt(r.value, 4)} {r.unit}",
            _fmt(r.median_s, 3), "—" if r.spread is None else f"{100 * r.spread:.1f}%", _fmt(r.gflop_per_image, 3),
            "—" if r.peak_fraction is None else f"{100 * r.peak_fraction:.1f}%", _fmt(r.peak_memory_mib, 4),
            "—" if r.batch_size is None else str(r.batch_size), r.device, r.precision, "yes" if r.compile else "no",
            notes,
        ])
    return rows


def multires_ratios(records: list[Record]) -> list[str]:
    """Each function backbone's multi-resolution FPS over each fixed-size backbone's, beside the paper's
    ratio (Table 2) and the ratio of FLOPs per image set (the compute-bound expectation)."""
    multires = {r.backbone: r for r in records if r.figure == "multires" and not r.error and r.value}
    lines = []
    for f in (r for r in multires.values() if r.notes.get("kind") == "function"):
        for o in (r for r in multires.values() if r.notes.get("kind") == "fixed"):
            ratio = f.value / o.value
            line = f"- {f.backbone} / {o.backbone}: **{ratio:.2f}×** ({_fmt(f.value, 4)} vs {_fmt(o.value, 4)} FPS)"
            if f.backbone in PAPER_MULTIRES_FPS and o.backbone in PAPER_MULTIRES_FPS:
                paper = PAPER_MULTIRES_FPS[f.backbone] / PAPER_MULTIRES_FPS[o.backbone]
                line += (f"; paper {PAPER_MULTIRES_FPS[f.backbone]} vs {PAPER_MULTIRES_FPS[o.backbone]} = "
                         f"{paper:.2f}×")
            if f.gflop_per_image and o.gflop_per_image:
                line += f"; FLOP ratio {o.gflop_per_image / f.gflop_per_image:.2f}×"
            lines.append(line)
    return lines


def markdown_report(result: BenchResult) -> str:
    env = result.environment
    headers, rows = summary_table(result.records)
    parts = [
        "# cmzoo bench",
        "",
        f"- date: {env['date']}; command: `{env['command']}`",
        f"- device: {env['device']} ({env['device_name']}); torch {env['torch']}, {env['torch_threads']} threads, "
        f"{env['cpu_cores']} cores; git {env.get('git_commit') or 'n/a'}",
    ]
    if "peak_tflops" in env:
        parts.append(f"- peak for '% of peak': {env['peak_tflops']} TFLOP/s ({env['peak_source']})")
    parts += ["", "## Summary", "", markdown_table(headers, rows), ""]
    ratios = multires_ratios(result.records)
    if ratios:
        parts += ["## Multi-resolution FPS ratios (paper Table 2)", "", *ratios, ""]
    parts += ["## All measurements", "", markdown_table(DETAIL_HEADERS, detail_rows(result.records)), ""]
    return "\n".join(parts)


def write_results(result: BenchResult, out: Path, plot: bool = True) -> list[Path]:
    """results.json, results.csv, results.md and (with `plot`) efficiency.png in `out`."""
    records = [asdict(r) for r in result.records]
    paths = [out / "results.json", out / "results.csv", out / "results.md"]
    write_text(paths[0], json.dumps({"environment": result.environment, "config": result.config,
                                     "records": records}, indent=2, default=str), "bench results")
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(records[0]) if records else ["backbone"])
    writer.writeheader()
    for r in records:
        writer.writerow({**r, "notes": json.dumps(r["notes"])})
    write_text(paths[1], table.getvalue(), "bench results")
    write_text(paths[2], markdown_report(result), "bench results")
    figure = plot_efficiency(result.records, out / "efficiency.png") if plot else None
    return paths + ([figure] if figure else []) + [p for p in result.files if p.exists()]


BAR_FIGURES: list[tuple[str, str, str, str]] = [  # (figure, record attribute, title, y label)
    ("params", "value", "parameters", "M"),
    ("train", "median_s", "training step", "s / step"),
    ("train", "peak_memory_mib", "training peak memory", "MiB"),
    ("infer", "value", "one-step inference", "images / s"),
    ("multires", "value", "multi-resolution sampling", "FPS (paper Table 2)"),
]


def plot_efficiency(records: list[Record], path: Path) -> Path | None:
    """Grouped bars (backbones within each resolution) for every efficiency figure that was measured."""
    shown = [p for p in BAR_FIGURES if any(r.figure == p[0] and not r.error for r in records)]
    if not shown:
        return None
    backbones = list(dict.fromkeys(r.backbone for r in records))
    fig, axes = panels(len(shown), 4.6, 3.6)
    for ax, (figure, attr, title, ylabel) in zip(axes, shown):
        rows = [r for r in records if r.figure == figure and not r.error]
        groups = list(dict.fromkeys(r.resolution for r in rows))
        width = 0.8 / len(backbones)
        for i, b in enumerate(backbones):
            values = {r.resolution: getattr(r, attr) or 0.0 for r in rows if r.backbone == b}
            xs = [g + (i - (len(backbones) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [values.get(g, 0.0) for g in groups], width, label=b)
        ax.set_xticks(range(len(groups)), [f"{g} px" for g in groups])
        ax.set(title=title, ylabel=ylabel)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def print_summary(result: BenchResult, console: Console) -> None:
    headers, rows = summary_table(result.records)
    console.print(rich_table(headers, rows, f"cmzoo bench — {result.environment['device_name']}"))
    for line in multires_ratios(result.records):
        console.print(line.replace("**", ""))
