"""`cmzoo report PATH`: one self-contained report.html for a run directory, and the HTML pieces that the
page of a bench results folder (cmzoo.bench.page) is built from.

Pure functions from the files a run or a bench wrote to HTML. Every image (the curves, drawn here from
metrics.jsonl; the sample grids; the bench's figures) is embedded as a base64 PNG, and the page has
no script and loads nothing from the network, so it can be archived or sent on its own.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import re
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence

from cmzoo.errors import ConfigError
from cmzoo.files import check_destination, write_text
from cmzoo.metrics.evaluate import EvalResult
from cmzoo.metrics.plots import plot_denoising_distances, pyplot, save_figure
from cmzoo.rundir import STEP_KEYS, RunDir

GRID_STEPS_SHOWN = 8  # a run's grids over steps: the first, the last and evenly spaced ones between
GRID_WIDTH = 280  # px on the page that a small sample grid is enlarged to

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

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
table.config td { text-align: left; font-family: ui-monospace, monospace; font-size: 12px; }
img { max-width: 100%; } img.grid { image-rendering: pixelated; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; } figcaption { color: #555; font-size: 12px; text-align: center; }
details { margin: 8px 0; } summary { cursor: pointer; color: #444; }
"""


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of a run directory to `out` (default PATH/report.html)."""
    path = Path(path)
    if not RunDir(path).is_run():
        raise ConfigError(f"{path} is neither a run directory (config.json and metrics.jsonl, from `cmzoo train`) "
                          "nor a bench results folder (results.json, from `cmzoo bench`)")
    target = check_destination(Path(out) if out is not None else path / "report.html", "report")
    return write_page(run_report(RunDir(path)), target)


def write_page(page: str, target: Path) -> Path:
    """Write an HTML page to `target`, creating its folder; an OS error is one OutputError line."""
    return write_text(target, page, "report")


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
    curves = {"training curves": _draw(lambda out: plot_training_curves(rows, out)),
              "denoising distance": _draw(lambda out: plot_denoising_distances(run_dir.metrics_file, out))}
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
    plt = pyplot()
    cols = min(3, len(curves))
    fig, axes = plt.subplots(-(-len(curves) // cols), cols, figsize=(4.2 * cols, 2.9 * -(-len(curves) // cols)),
                             squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    for ax, ((x_key, key), points) in zip(axes.flat, curves.items()):
        title, log = CURVES.get(key, (key, False))
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="." if len(xs) < 30 else None)
        ax.set(title=title, xlabel=x_key.replace("_", " "), yscale="log" if log else "linear")
    fig.tight_layout()
    save_figure(fig, out, dpi=80)
    return out


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


def config_table(config: dict[str, Any]) -> str:
    return html_table(["field", "value"], [[k, json.dumps(v)] for k, v in config.items()], "config")


def grid_figure(run_dir: Path, step: int | None, resolution: int, caption: str) -> str | None:
    """A run's training-size grid at `step` (None: its last) with a caption, or None when it has none."""
    grids = RunDir(run_dir).grids(resolution)
    at = grids.get(step if step is not None else max(grids, default=-1), {})
    path = at.get((resolution, resolution))
    if path is None:
        return None
    return (f"<figure>{embed_png(path.read_bytes(), caption, grid=True)}"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


# ---- HTML ----------------------------------------------------------------------------------------------


def esc(value: object) -> str:
    return html.escape(str(value))


def bold(markdown: str) -> str:
    """Escaped text with markdown's **bold** as <b>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(markdown))


def embed_png(png: bytes, alt: str, grid: bool = False) -> str:
    """An embedded PNG; a sample `grid` is enlarged by a whole factor (its pixels stay sharp) towards
    GRID_WIDTH px when it is smaller."""
    attrs = ""
    if grid:
        from PIL import Image

        width = Image.open(io.BytesIO(png)).width
        attrs = f' class="grid" width="{width * max(1, GRID_WIDTH // width)}"'
    return f'<img{attrs} alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _draw(plot: Callable[[BinaryIO], object]) -> bytes | None:
    """The PNG bytes a plotting function writes to a file object, or None when it drew nothing."""
    buffer = io.BytesIO()
    return buffer.getvalue() if plot(buffer) is not None else None


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", escape: bool = True) -> str:
    """An HTML table; with `escape=False` the cells are HTML already (headers are always escaped)."""
    cell = esc if escape else str
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, parts: Iterable[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(parts)
            + "\n</body></html>\n")
