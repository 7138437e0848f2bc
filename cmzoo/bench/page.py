"""The report.html page of a bench results folder: environment, summary, figures, samples, measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cmzoo.bench.config import BenchConfig
from cmzoo.bench.results import DETAIL_HEADERS, Record, detail_rows, multires_ratios, summary_table
from cmzoo.errors import ConfigError
from cmzoo.files import check_destination, read_json
from cmzoo.pages import bold, config_table, embed_png, esc, grid_figure, html_page, html_table, write_page


def write_bench_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of a bench results folder to `out` (default FOLDER/report.html)."""
    folder = Path(folder)
    target = check_destination(Path(out) if out is not None else folder / "report.html", "report")
    return write_page(bench_report(folder), target)


def bench_report(folder: Path) -> str:
    """The page of one `cmzoo bench`: environment, summary, figures, every backbone's samples side by side,
    every measurement and the config."""
    data = read_json(folder / "results.json", "bench results", ConfigError)
    records = [Record(**r) for r in data["records"]]
    env = data["environment"]
    lead = (f"{env.get('date')} · {env.get('device')} ({env.get('device_name')}) · torch {env.get('torch')}, "
            f"{env.get('torch_threads')} threads, {env.get('cpu_cores')} cores · git {env.get('git_commit') or 'n/a'}")
    parts = [f"<h1>cmzoo bench — {esc(folder.name)}</h1>", f'<p class="lead">{esc(lead)}<br>'
             f"<code>{esc(env.get('command'))}</code></p>"]
    headers, rows = summary_table(records)
    parts += ["<h2>Summary</h2>", html_table(headers, rows)]
    ratios = multires_ratios(records)
    if ratios:
        parts += ["<h3>Multi-resolution FPS ratios (paper Table 2)</h3>",
                  "<ul>" + "".join(f"<li>{bold(line.removeprefix('- '))}</li>" for line in ratios) + "</ul>"]
    figures = [folder / name for name in ("efficiency.png", "stability.png", "convergence.png")]
    if any(f.is_file() for f in figures):
        parts += ["<h2>Figures</h2>", '<div class="row">',
                  *(embed_png(f.read_bytes(), f.stem) for f in figures if f.is_file()), "</div>"]
    parts += bench_samples(folder, records, BenchConfig.model_validate(data["config"]).quality_size)
    parts += ["<h2>All measurements</h2>", f"<details><summary>{len(records)} rows</summary>",
              html_table(DETAIL_HEADERS, detail_rows(records)), "</details>",
              "<h2>Config</h2>", "<details><summary>bench config</summary>", config_table(data["config"]), "</details>"]
    return html_page(f"cmzoo bench — {folder.name}", parts)


def bench_samples(folder: Path, records: Sequence[Record], resolution: int) -> list[str]:
    """Each trained backbone's one-step samples at the training size side by side: its quality run's last
    grid, and its convergence run's grid at each scoring point (rows)."""
    parts = []
    quality = [grid_figure(folder / "quality" / r.backbone, None, resolution,
                            f"{r.backbone}: FID {r.value:.1f} after {r.notes.get('steps')} steps")
               for r in records if r.figure == "quality" and not r.error]
    if any(quality):
        parts += ["<h2>Samples after the quality budget</h2>", '<div class="row">', *filter(None, quality), "</div>"]
    points = {(r.resolution, r.backbone): r for r in records
              if r.figure == "convergence" and not r.error and r.notes.get("sampling_steps") == 1}
    if points:
        backbones = list(dict.fromkeys(b for _, b in points))
        labels = list(dict.fromkeys(label for label, _ in points))
        rows = [[esc(label)] + [(grid_figure(folder / "convergence" / b, points[label, b].notes["step"], resolution,
                                               f"{b}: FID {points[label, b].value:.1f}") if (label, b) in points
                                  else None) or "—" for b in backbones] for label in labels]
        parts += ["<h2>Samples at each convergence point</h2>", html_table(["training", *backbones], rows, escape=False)]
    return parts
