"""Checkpoints: one safetensors file per step (tensors + JSON metadata), written atomically, with a
SHA-256 sidecar that detects truncation or corruption; the last K are kept."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cmzoo.errors import CheckpointError

PATTERN = re.compile(r"step_(\d{8})\.safetensors$")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file, fsync it, and rename it over `path`: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
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


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Save `state` (nested tensors + JSON-able values) as step `step`; keep the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors, skeleton = flatten_state(state, "state")
    data = st_save(tensors, metadata={"skeleton": json.dumps(skeleton), "step": str(step), "format": "cmzoo-1"})
    path = directory / f"step_{step:08d}.safetensors"
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
    if hashlib.sha256(data).hexdigest() != digest.read_text().strip():
        raise CheckpointError(
            f"checkpoint {path} is corrupt (SHA-256 mismatch); delete it to resume from the previous one"
        )
    try:
        tensors = st_load(data)
        skeleton = json.loads(safetensors_metadata(data)["skeleton"])
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from None
    return unflatten_state(skeleton, tensors)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's bytes (an 8-byte header length, then JSON)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {})


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, reading only its header."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return safetensors_metadata(n.to_bytes(8, "little") + f.read(n))


def latest_checkpoint(directory: Path) -> Path:
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"no checkpoint in {directory}; train first (`cmzoo train --out ...`)")
    return found[-1]


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights into `module`; a mismatch is one line naming the source and the first problem."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        lines = str(err).splitlines()
        raise CheckpointError(f"weights in {source} do not fit this backbone/preset: {lines[-1].strip()}") from None


def load_run_weights(module: torch.nn.Module, run_dir: Path, weights: str = "online") -> None:
    """Initialise `module` from the newest checkpoint of another run (e.g. reconstruction pre-training)."""
    state = load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"))
    load_module_state(module, state[weights], run_dir)
