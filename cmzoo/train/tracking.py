"""What a run records, all of it passed through one `RunLog`: metrics.jsonl and the PNG sample grids
always (the source of truth, which `cmzoo report` reads), and TensorBoard event files in the run
directory as well with `log = "tensorboard"`.

A record is one JSON object with a `step` (or `pretrain_step`); in TensorBoard every number in it is a
scalar tagged by its key, nested keys joined by '/' (`denoising_distance/0.5`, `eval/1-step_32px/fid`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import torch

from cmzoo.engine.sampling import Size
from cmzoo.errors import ConfigError
from cmzoo.files import check_folder, writing
from cmzoo.grids import save_png

TENSORBOARD_MISSING = "--log tensorboard needs tensorboard: pip install tensorboard"
STEP_KEYS = ("step", "pretrain_step")
GRID_NAME = re.compile(r"step_(\d{8})(?:_(\d+)x(\d+))?\.png")


def grid_filename(step: int, size: Size, single: bool) -> str:
    """samples/ file name of the grid at `step`: the size is in the name when a run renders several."""
    return f"step_{step:08d}.png" if single else f"step_{step:08d}_{size[0]}x{size[1]}.png"


def written_grids(run_dir: Path, resolution: int) -> dict[int, dict[Size, Path]]:
    """The sample grids a run has written, step → (height, width) → PNG file, in step order."""
    grids: dict[int, dict[Size, Path]] = {}
    for path in (Path(run_dir) / "samples").glob("step_*.png"):
        match = GRID_NAME.fullmatch(path.name)
        if match:
            size = (int(match[2]), int(match[3])) if match[2] else (resolution, resolution)
            grids.setdefault(int(match[1]), {})[size] = path
    return {step: dict(sorted(grids[step].items())) for step in sorted(grids)}


def scalar_items(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every number of a record but its step; text, lists and None are left out."""
    for key, value in record.items():
        if not prefix and key in STEP_KEYS:
            continue
        if isinstance(value, dict):
            yield from scalar_items(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


class Sink(Protocol):
    """One destination of a run's records and sample grids."""

    def scalars(self, record: dict[str, Any]) -> None: ...

    def images(self, step: int, grids: dict[Size, torch.Tensor]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """metrics.jsonl (one JSON object a line) and samples/step_*.png."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def scalars(self, record: dict[str, Any]) -> None:
        with writing(self.run_dir / "metrics.jsonl", "metrics log") as path, open(path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def images(self, step: int, grids: dict[Size, torch.Tensor]) -> None:
        for size, grid in grids.items():
            save_png(grid, self.run_dir / "samples" / grid_filename(step, size, len(grids) == 1), "sample grid")

    def close(self) -> None:
        pass


def summary_writer() -> type:
    """torch's TensorBoard SummaryWriter, or a ConfigError naming the fix when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(TENSORBOARD_MISSING) from None
    return SummaryWriter


class TensorBoardSink:
    """Event files in the run directory; the sample grids as images tagged `samples/HxW`.

    `purge_step` (resuming at checkpoint step S: S + 1) makes TensorBoard drop what an interrupted
    invocation logged after its last checkpoint, so that the resumed steps are not shown twice.
    Reconstruction pre-training inside a training run goes to its own TensorBoard run, `pretrain/`,
    whose steps are not the training steps and must not be purged with them."""

    FLUSH_SECS = 10  # a TensorBoard watching the run sees a new step within seconds

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        self.run_dir = run_dir
        self.writer_type = summary_writer()
        self.writer = self.writer_type(str(run_dir), purge_step=purge_step, flush_secs=self.FLUSH_SECS)
        self.pretrain = None

    def scalars(self, record: dict[str, Any]) -> None:
        if "pretrain_step" in record:
            if self.pretrain is None:
                self.pretrain = self.writer_type(str(self.run_dir / "pretrain"), flush_secs=self.FLUSH_SECS)
            writer, step = self.pretrain, record["pretrain_step"]
        else:
            writer, step = self.writer, record["step"]
        for tag, value in scalar_items(record):
            writer.add_scalar(tag, value, step)

    def images(self, step: int, grids: dict[Size, torch.Tensor]) -> None:
        for (h, w), grid in grids.items():
            self.writer.add_image(f"samples/{h}x{w}", grid, step, dataformats="CHW")

    def close(self) -> None:
        for writer in (self.writer, self.pretrain):
            if writer is not None:
                writer.close()


class RunLog:
    """Every sink of a run, fed the same records and grids; with no sinks (a DDP rank other than 0,
    a trainer that is only timed) it records nothing. `notes`: what opening the log repaired."""

    def __init__(self, sinks: Sequence[Sink] = (), notes: Sequence[str] = ()) -> None:
        self.sinks = list(sinks)
        self.notes = list(notes)

    def scalars(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.scalars(record)

    def images(self, step: int, grids: dict[Size, torch.Tensor]) -> None:
        for sink in self.sinks:
            sink.images(step, grids)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refuse_existing_run(run_dir: str | Path) -> None:
    """A new run must start in a directory without another run's log or checkpoints: it would append
    to that metrics.jsonl, and `--resume` would then pick the other run's newer checkpoints. The
    directory must be one that can be written, which is checked before any work."""
    run_dir = Path(run_dir)
    check_folder(run_dir, "run directory")
    found = [name for name in ("metrics.jsonl", "checkpoints", "pretrain/checkpoints") if (run_dir / name).exists()]
    if found:
        raise ConfigError(
            f"{run_dir} already holds a run ({' and '.join(found)}); give another --out, or delete the directory "
            f"to start over (`cmzoo train --resume {run_dir}` continues a training run)"
        )


def open_run_log(run_dir: Path, log: str, purge_step: int | None = None) -> RunLog:
    """metrics.jsonl and grids in `run_dir`, and TensorBoard event files too when `log` is 'tensorboard'.
    A torn last line of metrics.jsonl is removed first, with a note in the log's `notes`."""
    run_dir = Path(run_dir)
    torn = repair_torn_line(run_dir / "metrics.jsonl")
    sinks: list[Sink] = [JsonlSink(run_dir)]
    if log == "tensorboard":
        sinks.append(TensorBoardSink(run_dir, purge_step))
    return RunLog(sinks, [torn] if torn else [])


def repair_torn_line(path: Path) -> str | None:
    """A crash while appending can leave a half-written last line in a JSONL log. Cut it off (a whole
    record that only lacks its newline gets one), so that the next record starts a line of its own;
    returns a note of what was cut, or None."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    start = data.rfind(b"\n") + 1
    try:
        json.loads(data[start:])
        whole = True
    except ValueError:
        whole = False
    with writing(path, "metrics log"), open(path, "r+b") as f:
        if whole:
            f.seek(0, 2)
            f.write(b"\n")
        else:
            f.truncate(start)
    return None if whole else (f"{path} ended in a torn line ({len(data) - start} bytes, from a crash while "
                               "writing); it was removed")
