"""Scale and faults: 2-process DDP = one process with the doubled batch = gradient accumulation; exact
resume after SIGKILL/SIGTERM; NaN stop; corrupt-checkpoint fallback; keep-last-K; bf16/fp16 steps."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from cmzoo.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from cmzoo.config import make_config
from cmzoo.data import ImageDataset
from cmzoo.engine import recipes as recipes_module
from cmzoo.errors import CheckpointError, ConfigError, TrainingError
from cmzoo.train.trainer import Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
# ct-short (RAdam): its first steps are SGD-like, so reduction-order differences between one process
# and two stay at rounding level; Adam's normalised first steps would amplify them to ±lr.
FAST = ["--backbone", "dit", "--preset", "tiny", "--recipe", "ct-short", "--sample-every", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
    return str(path)


def _train_cli(*args):
    return [sys.executable, "-m", "cmzoo", "train", *FAST, *args]


def _final(run_dir, weights="online"):
    return load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"))[weights]


def _trainer(tmp_path, console=None, **overrides):
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8))
    fields = {"backbone": "dit", "preset": "tiny", "recipe": "ct-short", "batch_size": 4, "steps": 6, "sample_every": 0, "denoise_every": 0,
              "checkpoint_every": 2, "device": "cpu", "out": str(tmp_path / "run")}
    cfg = make_config(**{**fields, **overrides})
    return Trainer(cfg, console=console or Console(file=io.StringIO()), data=ImageDataset(images, name="rand"))


# ---- DDP and gradient accumulation --------------------------------------------------------------


def test_two_gloo_processes_equal_one_process_with_the_doubled_batch(tmp_path, npz):
    run = tmp_path / "ddp"
    # torchrun's own parser takes `--log` for an ambiguous abbreviation of its --log-dir: the config file says it
    (tmp_path / "log.toml").write_text('log = "tensorboard"\n')
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cmzoo",
           "train", *FAST, "--data", npz, "--batch-size", "8", "--steps", "3", "--config", str(tmp_path / "log.toml"),
           "--out", str(run)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # rank 0 alone logs
    assert sum('"loss"' in line for line in (run / "metrics.jsonl").read_text().splitlines()) == 1
    ddp = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert len(ddp["rng"]["ranks"]) == 2  # every rank's RNG state is in the checkpoint
    for accum in (1, 2):  # one process × batch 8, and 2 micro-batches of 4
        single = Trainer(make_config(backbone="dit", recipe="ct-short", data=npz, batch_size=8, steps=3, grad_accum=accum,
                                     device="cpu", out=str(tmp_path / f"single{accum}")), console=Console(quiet=True))
        for _ in range(3):
            single.train_step()
        for name, module in (("online", single.online), ("target", single.target), ("ema", single.ema)):
            for key, value in module.net.state_dict().items():
                torch.testing.assert_close(ddp[name][key], value, atol=1e-5, rtol=0, msg=f"{name} {key}")


def test_batch_must_split_over_ranks_and_micro_batches(tmp_path):
    with pytest.raises(ConfigError, match="batch_size 4 must be divisible by .* grad_accum 3"):
        _trainer(tmp_path, grad_accum=3)


# ---- exact resume after a crash or a signal -----------------------------------------------------

STEPS = ["--steps", "10", "--checkpoint-every", "2", "--batch-size", "4"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, npz):
    run = tmp_path_factory.mktemp("ref") / "run"
    r = subprocess.run(_train_cli("--data", npz, *STEPS, "--out", str(run)), check=False, capture_output=True, text=True,
                       env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return _final(run)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, npz, uninterrupted, sig):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cli("--data", npz, *STEPS, "--out", str(run)), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # wait for a complete checkpoint (its checksum sidecar is written last)
    while not list((run / "checkpoints").glob("*.sha256")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # SIGTERM: a checkpoint, a one-line message and exit status 130
        assert proc.returncode == 130, err[-3000:]
        assert "stopped by signal SIGTERM" in err and "--resume" in err
    assert not (run / "checkpoints" / "step_00000010.safetensors").exists(), "the run finished before the signal"
    resume = [sys.executable, "-m", "cmzoo", "train", "--resume", str(run)]
    r = subprocess.run(resume, check=False, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = _final(run)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


# ---- faults ------------------------------------------------------------------------------------


def _nan_from_step(monkeypatch, trainer, first_bad):
    real = recipes_module.consistency_loss

    def loss(*args, **kwargs):
        out = real(*args, **kwargs)
        return out * float("nan") if trainer.step >= first_bad else out

    monkeypatch.setattr(recipes_module, "consistency_loss", loss)


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    _nan_from_step(monkeypatch, trainer, 3)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 3 .*last good checkpoint .*kept"):
        trainer.run()
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_00000002.safetensors"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002.safetensors")["step"] == 2


def test_bad_steps_are_skipped_up_to_the_limit(tmp_path, monkeypatch):
    out = io.StringIO()
    trainer = _trainer(tmp_path, console=Console(file=out), max_bad_steps=1)
    trainer.train_step()
    _nan_from_step(monkeypatch, trainer, 1)
    before = {k: v.clone() for k, v in trainer.online.state_dict().items()}
    assert np.isnan(trainer.train_step()["loss"]) and trainer.step == 2
    assert all(torch.equal(before[k], v) for k, v in trainer.online.state_dict().items())  # no update
    assert "update skipped (1 of max_bad_steps 1)" in out.getvalue()
    with pytest.raises(TrainingError, match="non-finite loss .* at step 2 \\(max_bad_steps 1\\)"):
        trainer.train_step()


def test_resume_falls_back_to_the_newest_valid_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, steps=4)
    trainer.run()
    final = {k: v.clone() for k, v in trainer.online.net.state_dict().items()}
    newest = tmp_path / "run" / "checkpoints" / "step_00000004.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    out = io.StringIO()
    again = _trainer(tmp_path, console=Console(file=out, width=300), steps=4)
    again.resume()
    assert again.step == 2
    assert "step_00000004.safetensors is corrupt" in out.getvalue() and "resuming from step_00000002" in out.getvalue()
    again.run()  # the same trajectory from step 2 rewrites step 4
    assert all(torch.equal(final[k], v) for k, v in again.online.net.state_dict().items())


def test_resume_with_no_valid_checkpoint_is_a_clear_error(tmp_path):
    _trainer(tmp_path, steps=2).run()
    (tmp_path / "run" / "checkpoints" / "step_00000002.sha256").unlink()
    with pytest.raises(CheckpointError, match="no valid checkpoint in .*not completely written"):
        _trainer(tmp_path, steps=2).resume()


def test_keeps_the_last_k_checkpoints(tmp_path):
    _trainer(tmp_path, steps=5, checkpoint_every=1, keep_checkpoints=2).run()
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [
        "step_00000004.safetensors", "step_00000005.safetensors"]


# ---- mixed precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_on_the_cpu(tmp_path, precision):
    trainer = _trainer(tmp_path, precision=precision)
    before = {k: v.clone() for k, v in trainer.online.state_dict().items()}
    try:
        losses = [trainer.train_step()["loss"] for _ in range(2)]
    except RuntimeError as err:
        if "not implemented" in str(err) or "not supported" in str(err):
            pytest.skip(f"{precision} autocast is not supported on this CPU build: {err}")
        raise
    assert all(np.isfinite(losses))
    assert any(not torch.equal(before[k], v) for k, v in trainer.online.state_dict().items())
    assert all(p.dtype == torch.float32 for m in (trainer.online, trainer.target, trainer.ema) for p in m.parameters())
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    state = trainer.state_dict()
    assert ("scale" in state["scaler"]) == (precision == "fp16")
