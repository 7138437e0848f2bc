"""Checkpoints: round trip, atomic keep-last-K, corruption detection."""

import pytest
import torch

from cmzoo.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from cmzoo.errors import CheckpointError


def _state(step):
    opt = torch.optim.RAdam(torch.nn.Linear(2, 2).parameters())
    return {"step": step, "w": torch.arange(4.0) * step, "nested": {"a": [1, (2, 3)], "none": None},
            "optimizer": opt.state_dict()}


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path, 7, _state(7), keep=3)
    state = load_checkpoint(path)
    assert state["step"] == 7 and torch.equal(state["w"], torch.arange(4.0) * 7)
    assert state["nested"] == {"a": [1, (2, 3)], "none": None}
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_keeps_the_last_k(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, _state(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004.safetensors", "step_00000005.safetensors"]
    assert latest_checkpoint(tmp_path).name == "step_00000005.safetensors"
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_checksum"])
def test_corruption_is_detected(tmp_path, damage):
    path = save_checkpoint(tmp_path, 1, _state(1), keep=3)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.with_suffix(".sha256").unlink()
    with pytest.raises(CheckpointError, match="corrupt|not completely written"):
        load_checkpoint(path)


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        latest_checkpoint(tmp_path)
