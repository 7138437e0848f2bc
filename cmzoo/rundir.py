"""A run directory: its layout, and every file a run writes there or is read back from it.

    config.json            the resolved TrainConfig (one validated reader: `RunDir.read_config`)
    metrics.jsonl          one JSON record a line, written through `RunLog` (the source of truth)
    samples/step_*.png     sample grids, the size in the name when a run renders several
    checkpoints/           step_*.safetensors with SHA-256 files (`checkpoint.py`), built by `checkpoint_state`
    pretrain/checkpoints/  the reconstruction pre-training phase of a training run
    events.out.tfevents.*  TensorBoard, with `log = "tensorboard"` (pre-training's under pretrain/)

A record is one JSON object with a `step` (or `pretrain_step`); in TensorBoard every number in it is a
scalar tagged by its key, nested keys joined by '/' (`denoising_distance/0.5`, `eval/1-step_32px/fid`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
from pydantic import ValidationError

import cmzoo.checkpoint as checkpoint
from cmzoo.backbone import validation_message
from cmzoo.config import DEFAULT_BACKBONE, TrainConfig
from cmzoo.engine.sampling import Size
from cmzoo.errors import CheckpointError, ConfigError
from cmzoo.files import check_folder, read_json, write_text, writing
from cmzoo.grids import save_png

TENSORBOARD_MISSING = "--log tensorboard needs tensorboard: pip install tensorboard"
STEP_KEYS = ("step", "pretrain_step")
GRID_NAME = re.compile(r"step_(\d{8})(?:_(\d+)x(\d+))?\.png")
# The fields that decide a network's parameters: weights only load into a network built from the same.
NETWORK_FIELDS = ("backbone", "preset", "backbone_overrides", "resolution", "class_conditional")
RESUME_FIX = "resume with the run's own backbone, preset and --set fields, or give a new --out"


def checkpoint_state(config: TrainConfig, step: int, channels: int, num_classes: int | None,
                     **parts: Any) -> dict[str, Any]:
    """What every checkpoint holds: its step, what rebuilds the network (the config, the data's channels
    and classes), and `parts`: weights by role (online, target, ema), optimizer, RNG states, …"""
    return {"step": step, "num_classes": num_classes, "channels": channels, **parts,
            "config": config.model_dump_json()}


def check_same_network(saved: dict[str, Any] | None, config: TrainConfig, holder: str, asker: str, fix: str) -> None:
    """Refuse weights saved for another network than `config` builds, in one line: "`holder` holds func
    weights, but `asker` says dit; `fix`". `saved` is the config stored beside the weights (None for
    checkpoints written without one, which are not checked)."""
    if saved is None:
        return
    ours = config.model_dump(mode="json")
    differ = [f for f in NETWORK_FIELDS if saved.get(f, ours[f]) != ours[f]]
    if not differ:
        return
    if differ[0] == "backbone":
        held, asked = saved["backbone"], ours["backbone"]
    else:
        held, asked = (c["backbone"] + " (" + ", ".join(f"{f} {json.dumps(c.get(f))}" for f in differ) + ")"
                       for c in (saved, ours))
    raise CheckpointError(f"{holder} holds {held} weights, but {asker} says {asked}; {fix}")


class RunDir:
    """The directory of one training or pre-training run (`--out`), and where each of its files lies."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_file = self.path / "config.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.denoising_plot = self.path / "denoising_distance.png"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def pretrain(self) -> "RunDir":
        """The reconstruction pre-training phase inside a training run: its checkpoints and TensorBoard run."""
        return RunDir(self.path / "pretrain")

    def is_run(self) -> bool:
        """Whether a run has written here (its config and its log)."""
        return self.config_file.is_file() and self.metrics_file.is_file()

    # ---- the config ------------------------------------------------------------------------------------

    def refuse_existing(self) -> None:
        """A new run must start in a directory without another run's log or checkpoints: it would append
        to that metrics.jsonl, and `--resume` would then pick the other run's newer checkpoints. The
        directory must be one that can be written, which is checked before any work."""
        check_folder(self.path, "run directory")
        found = [str(p.relative_to(self.path)) for p in (self.metrics_file, self.checkpoints, self.pretrain.checkpoints)
                 if p.exists()]
        if found:
            raise ConfigError(
                f"{self.path} already holds a run ({' and '.join(found)}); give another --out, or delete the directory "
                f"to start over (`cmzoo train --resume {self.path}` continues a training run)"
            )

    def write_config(self, config: TrainConfig) -> None:
        write_text(self.config_file, config.model_dump_json(indent=2), "run config")

    def read_config(self) -> TrainConfig:
        """The run's config.json; a missing, damaged or incomplete one is one CheckpointError line."""
        path = self.config_file
        if not path.exists():
            raise CheckpointError(f"{self.path} is not a cmzoo run directory (no config.json); give the --out of "
                                  "`cmzoo train`")
        fields = read_json(path, "run config", CheckpointError)
        if not isinstance(fields, dict):
            raise CheckpointError(f"{path} is not a run config (a JSON object of TrainConfig fields); restore the file")
        if "backbone" not in fields:  # the default would silently build another network
            held = self.saved_backbone()
            holds = f"; its checkpoints hold {held} weights" if held else ""
            raise CheckpointError(f"{path} names no backbone (its field 'backbone' is missing){holds}: add it back, "
                                  f'e.g. "backbone": "{held or DEFAULT_BACKBONE}"')
        try:
            return TrainConfig.model_validate(fields)
        except ValidationError as err:
            raise CheckpointError(f"{path} is not a valid run config: {validation_message(err)}") from None

    def saved_backbone(self) -> str | None:
        """The backbone named beside the weights of the newest checkpoint (None when that cannot be told)."""
        try:
            saved = checkpoint.header_config(self.latest_checkpoint())
        except (CheckpointError, OSError, ValueError):
            return None
        return saved.get("backbone") if saved else None

    # ---- checkpoints -----------------------------------------------------------------------------------

    def list_checkpoints(self) -> list[Path]:
        """The checkpoint files, oldest first."""
        return checkpoint.list_checkpoints(self.checkpoints)

    def latest_checkpoint(self) -> Path:
        return checkpoint.latest_checkpoint(self.checkpoints)

    def latest_step(self) -> int:
        """The step of the newest checkpoint, read from its header alone."""
        return int(checkpoint.read_safetensors_metadata(self.latest_checkpoint())["step"])

    def save_checkpoint(self, state: dict[str, Any], keep: int) -> Path:
        """Write `state` (see `checkpoint_state`) as a checkpoint of its step; keep the newest `keep`."""
        return checkpoint.save_checkpoint(self.checkpoints, state["step"], state, keep)

    def checkpoint_path(self, step: int) -> Path:
        return checkpoint.checkpoint_file(self.checkpoints, step)

    def checkpoint_for(self, which: int | str | Path | None = None) -> Path:
        """The checkpoint to load: the newest (None), the one of a training step (int), or a file."""
        if which is None:
            return self.latest_checkpoint()
        if not isinstance(which, int):
            return Path(which)
        path = self.checkpoint_path(which)
        if not path.is_file():
            kept = ", ".join(str(int(checkpoint.PATTERN.search(p.name)[1])) for p in self.list_checkpoints())
            raise CheckpointError(f"run {self.path} keeps no checkpoint of step {which} (it keeps steps: "
                                  f"{kept or 'none'}); give one of those, or --keep-checkpoints when training")
        return path

    def newest_valid_checkpoint(self, note: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
        return checkpoint.newest_valid_checkpoint(self.checkpoints, note)

    def load_weights(self, module: torch.nn.Module, weights: str = "online") -> None:
        """Initialise `module` from the newest checkpoint of this run (e.g. reconstruction pre-training)."""
        state = checkpoint.load_checkpoint(self.latest_checkpoint())
        saved = checkpoint.stored_config(state)
        source = f"{self.path} (a {saved['backbone']} run)" if saved and "backbone" in saved else self.path
        checkpoint.load_module_state(module, state[weights], source)

    # ---- the log and the grids ---------------------------------------------------------------------------

    def open_log(self, log: str, purge_step: int | None = None) -> "RunLog":
        """metrics.jsonl and grids here, and TensorBoard event files too when `log` is 'tensorboard'.
        A torn last line of metrics.jsonl is removed first, with a note in the log's `notes`."""
        torn = repair_torn_line(self.metrics_file)
        sinks: list[Sink] = [JsonlSink(self)]
        if log == "tensorboard":
            sinks.append(TensorBoardSink(self, purge_step))
        return RunLog(sinks, [torn] if torn else [])

    def read_metrics(self, unreadable: list[int] | None = None) -> list[dict[str, Any]]:
        """The records of metrics.jsonl. A line that is not a JSON object (a torn last line, left by a crash
        while writing) is skipped, and its number appended to `unreadable` for the caller to report."""
        rows = []
        for number, line in enumerate(self.metrics_file.read_bytes().splitlines(), 1):
            try:
                row = json.loads(line) if line.strip() else None
            except ValueError:
                row = "torn"
            if isinstance(row, dict):
                rows.append(row)
            elif row is not None and unreadable is not None:
                unreadable.append(number)
        return rows

    def grid_file(self, step: int, size: Size, single: bool) -> Path:
        """The grid at `step`: the size is in the name when a run renders several."""
        name = f"step_{step:08d}.png" if single else f"step_{step:08d}_{size[0]}x{size[1]}.png"
        return self.samples / name

    def grids(self, resolution: int) -> dict[int, dict[Size, Path]]:
        """The sample grids the run has written, step → (height, width) → PNG file, in step order."""
        grids: dict[int, dict[Size, Path]] = {}
        for path in self.samples.glob("step_*.png"):
            match = GRID_NAME.fullmatch(path.name)
            if match:
                size = (int(match[2]), int(match[3])) if match[2] else (resolution, resolution)
                grids.setdefault(int(match[1]), {})[size] = path
        return {step: dict(sorted(grids[step].items())) for step in sorted(grids)}


# ---- the sinks of a run's log ----------------------------------------------------------------------------


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

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def scalars(self, record: dict[str, Any]) -> None:
        with writing(self.run_dir.metrics_file, "metrics log") as path, open(path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def images(self, step: int, grids: dict[Size, torch.Tensor]) -> None:
        for size, grid in grids.items():
            save_png(grid, self.run_dir.grid_file(step, size, len(grids) == 1), "sample grid")

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

    def __init__(self, run_dir: RunDir, purge_step: int | None = None) -> None:
        self.run_dir = run_dir
        self.writer_type = summary_writer()
        self.writer = self.writer_type(str(run_dir), purge_step=purge_step, flush_secs=self.FLUSH_SECS)
        self.pretrain = None

    def scalars(self, record: dict[str, Any]) -> None:
        if "pretrain_step" in record:
            if self.pretrain is None:
                self.pretrain = self.writer_type(str(self.run_dir.pretrain), flush_secs=self.FLUSH_SECS)
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
