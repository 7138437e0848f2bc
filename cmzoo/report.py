"""`cmzoo report PATH`: one self-contained report.html for a run directory (the page of a bench results
folder is `cmzoo.bench.page`; both are built from `cmzoo.pages`).

Pure functions from the files a run wrote to HTML: its evaluations, its curves (drawn here from
metrics.jsonl), its sample grids over steps and sizes, and its config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from cmzoo.errors import ConfigError
from cmzoo.figures import panels, plot_denoising_distances, save_figure
from cmzoo.files import check_destination
from cmzoo.metrics.evaluate import EvalResult
from cmzoo.pages import config_table, embed_png, esc, html_page, html_table, png_of, write_page
from cmzoo.rundir import STEP_KEYS, RunDir

GRID_STEPS_SHOWN = 8  # a run's grids over steps: the first, the last and evenly spaced ones between

# Panel titles of the curves that have one (any other number in metrics.jsonl is drawn under its key),
# and whether the panel's y axis is logarithmic.
CURVES: dict[str, tuple[str, bool]] = {
    "loss": ("training loss (window mean)", True),
    "num_scales": ("N(k): σ grid points", False),
    "stage": ("ect stage (−1: denoiser)", False),
    "target_ema": ("μ(k): target EMA", False),
    "lr": ("learning rate", False),
    "it_per_s": ("training speed (it/s)", False),
    "mse": ("reconstruction MSE", True),
    "psnr": ("reconstruction PSNR (dB)", False),
}

def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of a run directory to `out` (default PATH/report.html)."""
    path = Path(path)
    if not RunDir(path).is_run():
        raise ConfigError(f"{path} is neither a run directory (config.json and metrics.jsonl, from `cmzoo train`) "
                          "nor a bench results folder (results.json, from `cmzoo bench`)")
    target = check_destination(Path(out) if out is not None else path / "report.html", "report")
    return write_page(run_report(RunDir(path)), target)


def run_report(run_dir: RunDir) -> str:
    """The page of one training or pre-training run: overview, evaluations, curves, sample grids, config."""
    config = run_dir.read_config()
    unreadable: list[int] = []
    rows = run_dir.read_metrics(unreadable)
    steps = [r["step"] for r in rows if "step" in r]
    lead = (f"{config.backbone}/{config.preset} on {config.data or 'shapes'} at {config.resolution} px; "
            f"{max(steps, default=0)} of {config.steps} steps logged")
    if unreadable:
        lead += (f"; metrics.jsonl line {', '.join(map(str, unreadable))} is not a JSON record (torn by a crash "
                 "while writing) and was skipped")
    curves = {"training curves": png_of(lambda out: plot_training_curves(rows, out)),
              "denoising distance": png_of(lambda out: plot_denoising_distances(rows, out))}
    parts = [f"<h1>cmzoo run — {esc(run_dir.path.name)}</h1>", f'<p class="lead">{esc(lead)}</p>']
    evaluations = eval_rows(rows)
    if evaluations:
        parts += ["<h2>Evaluation</h2>", html_table(["step", "sampling", *EvalResult.HEADERS], evaluations)]
    if any(curves.values()):
        parts += ["<h2>Curves</h2>", '<div class="row">', *(embed_png(png, alt) for alt, png in curves.items() if png),
                  "</div>"]
    parts += grid_section(run_dir, config.resolution)
    parts += ["<h2>Config</h2>", config_table(config.model_dump(mode="json"))]
    return html_page(f"cmzoo run — {run_dir.path.name}", parts)


def training_curves(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[float, float]]:
    """(step key, key) → {step: value} for every number logged against `step` or `pretrain_step`. A step
    logged twice (a run resumed from an older checkpoint) keeps its last value, as TensorBoard shows it."""
    curves: dict[tuple[str, str], dict[float, float]] = {}
    for row in rows:
        x_key = next((k for k in STEP_KEYS if k in row), None)
        for key, value in row.items():
            if x_key and key not in STEP_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                curves.setdefault((x_key, key), {})[row[x_key]] = value
    return curves


def plot_training_curves(rows: Iterable[dict[str, Any]], out: Path | BinaryIO) -> Path | BinaryIO | None:
    """One panel per logged number (loss, N(k) or stage, μ(k), lr, it/s, pre-training MSE and PSNR)."""
    curves = training_curves(rows)
    if not curves:
        return None
    fig, axes = panels(len(curves), 4.2, 2.9)
    for ax, ((x_key, key), points) in zip(axes, curves.items()):
        title, log = CURVES.get(key, (key, False))
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="." if len(xs) < 30 else None)
        ax.set(title=title, xlabel=x_key.replace("_", " "), yscale="log" if log else "linear")
    return save_figure(fig, out, dpi=80)


def eval_rows(rows: Iterable[dict[str, Any]]) -> list[list[str]]:
    """Table rows of the evaluations recorded by `cmzoo eval --run` (and bench quality), with both sample counts."""
    names = {f.name for f in dataclasses.fields(EvalResult)}
    return [[str(row["step"]), label, *EvalResult(**{k: v for k, v in scores.items() if k in names}).cells()]
            for row in rows if "eval" in row for label, scores in row["eval"].items()]


def grid_section(run_dir: RunDir, resolution: int) -> list[str]:
    """The sample grids over steps (rows) and render sizes (columns); at most GRID_STEPS_SHOWN steps."""
    grids = run_dir.grids(resolution)
    if not grids:
        return []
    steps = list(grids)
    shown = sorted({steps[round(i * (len(steps) - 1) / (GRID_STEPS_SHOWN - 1))] for i in range(GRID_STEPS_SHOWN)})
    sizes = list(dict.fromkeys(size for step in shown for size in grids[step]))
    rows = [[str(step)] + [embed_png(grids[step][s].read_bytes(), f"step {step}, {s[0]}×{s[1]}", grid=True)
                           if s in grids[step] else "—" for s in sizes] for step in shown]
    note = "" if len(shown) == len(steps) else f" ({len(shown)} of {len(steps)} steps; every grid is in samples/)"
    return [f"<h2>One-step samples of the sample EMA{esc(note)}</h2>",
            html_table(["step"] + [f"{h}×{w}" for h, w in sizes], rows, escape=False)]
