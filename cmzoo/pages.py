"""The pieces of cmzoo's self-contained HTML pages (`cmzoo report` of a run, and of a bench).

Every image is embedded as a base64 PNG, and a page has no script and loads nothing from the network,
so it can be archived or sent on its own.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence

from cmzoo.files import write_text
from cmzoo.rundir import RunDir

GRID_WIDTH = 280  # px on the page that a small sample grid is enlarged to

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


def write_page(page: str, target: Path) -> Path:
    """Write an HTML page to `target`, creating its folder; an OS error is one OutputError line."""
    return write_text(target, page, "report")


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


def png_of(plot: Callable[[BinaryIO], object]) -> bytes | None:
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
