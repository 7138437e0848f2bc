"""Checkpoints: one safetensors file per step (tensors + JSON metadata), written atomically, with a
SHA-256 sidecar that detects truncation or corruption; the last K are kept."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cmzoo.errors import CheckpointError
from cmzoo.files import file_kind, writing

PATTERN = re.compile(r"step_(\d{8})\.safetensors$")
FORMAT = "cmzoo-1"  # the `format` metadata of a checkpoint
MAX_HEADER = 100_000_000  # bytes: safetensors' own limit on the JSON header


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file, fsync it, and rename it over `path`: readers never see half a file.
    A failed write removes the temp file and leaves `path` as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def flatten_state(tree: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested dict/list of tensors and plain values into flat tensors and a JSON skeleton."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[key] = node.detach().contiguous().cpu().clone()
            return {"__tensor__": key}
        if isinstance(node, dict):
            return {"__dict__": [[k, walk(v, f"{key}.{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(node)], "tuple": isinstance(node, tuple)}
        return node

    return tensors, walk(tree, prefix)


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            items = [unflatten_state(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton["tuple"] else items
    return skeleton


def checkpoint_file(directory: Path, step: int) -> Path:
    """Where the checkpoint of `step` lies in `directory`."""
    return directory / f"step_{step:08d}.safetensors"


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Save `state` (nested tensors + JSON-able values) as step `step`; keep the newest `keep`."""
    tensors, skeleton = flatten_state(state, "state")
    data = st_save(tensors, metadata={"skeleton": json.dumps(skeleton), "step": str(step), "format": FORMAT})
    path = checkpoint_file(directory, step)
    with writing(path, "checkpoint", "; the earlier checkpoints are kept"):
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        atomic_write(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if PATTERN.search(p.name))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved at `path`, after checking its SHA-256; a clear error when it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    digest = path.with_suffix(".sha256")
    if not digest.is_file():
        raise CheckpointError(f"checkpoint {path} has no checksum file {digest.name}: it was not completely written")
    if hashlib.sha256(data).hexdigest().encode() != digest.read_bytes().strip():
        raise CheckpointError(
            f"checkpoint {path} is corrupt (SHA-256 mismatch); delete it to resume from the previous one"
        )
    try:
        skeleton = json.loads(safetensors_metadata(data, path)["skeleton"])
        tensors = st_load(data)
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from None
    return unflatten_state(skeleton, tensors)


def header_length(head: bytes, size: int, source: str | Path) -> int:
    """The JSON header length in the first 8 bytes of `head` (the start of a safetensors file of `size`
    bytes), checked against the size before anything is allocated; a file of another kind is named."""
    n = int.from_bytes(head[:8], "little")
    if len(head) < 8 or not 2 <= n <= min(size - 8, MAX_HEADER):
        found = "too short" if len(head) < 8 else f"its header length {n} does not fit its {size} bytes"
        raise CheckpointError(f"{source} is not a safetensors file: it holds {file_kind(head)} ({found}); "
                              "give a .safetensors file written by cmzoo")
    return n


def safetensors_metadata(data: bytes, source: str | Path = "data") -> dict[str, str]:
    """The `__metadata__` of a safetensors file's bytes (an 8-byte header length, then JSON)."""
    n = header_length(data[:16], len(data), source)
    return parse_header(data[8 : 8 + n], source)


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, reading only its header (its length checked first)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)  # the length, and enough to tell another kind of file
        n = header_length(head, path.stat().st_size, path)
        f.seek(8)
        return parse_header(f.read(n), path)


def parse_header(header: bytes, source: str | Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors JSON header; a header that is not a JSON object is a CheckpointError."""
    try:
        parsed = json.loads(header)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise CheckpointError(f"{source} is not a safetensors file: its header is not JSON; "
                              "give a .safetensors file written by cmzoo")
    return parsed.get("__metadata__") or {}


def latest_checkpoint(directory: Path) -> Path:
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"no checkpoint in {directory}; train first (`cmzoo train --out ...`)")
    return found[-1]


def newest_valid_checkpoint(directory: Path, note: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint in `directory` that loads, and its state; damaged newer ones are passed
    over, each reported through `note`."""
    problems = []
    for path in reversed(list_checkpoints(directory)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            note(f"{err} — falling back to the previous checkpoint")
            continue
        if problems:
            note(f"resuming from {path.name} (step {state['step']})")
        return path, state
    if not problems:
        latest_checkpoint(directory)  # raises: no checkpoint at all
    raise CheckpointError(f"no valid checkpoint in {directory}: {'; '.join(problems)}")


def stored_config(state: dict[str, Any]) -> dict[str, Any] | None:
    """The run config saved beside a checkpoint's weights, or None for checkpoints written without one."""
    return json.loads(state["config"]) if isinstance(state.get("config"), str) else None


def header_config(path: Path) -> dict[str, Any] | None:
    """The run config stored in the checkpoint at `path`, read from its header alone (None without one)."""
    fields = dict(json.loads(read_safetensors_metadata(path).get("skeleton", "{}")).get("__dict__", []))
    return json.loads(fields["config"]) if isinstance(fields.get("config"), str) else None


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load weights into `module`; a mismatch is one line naming the source and counting the problems."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        first = (missing or unexpected or reshaped)[0]
        raise CheckpointError(
            f"weights in {source} do not fit this network: {len(missing)} missing, {len(unexpected)} unexpected "
            f"and {len(reshaped)} differently shaped tensors (first: {first!r}); give the backbone, preset and "
            "--set fields those weights were trained with")
    module.load_state_dict(state)
