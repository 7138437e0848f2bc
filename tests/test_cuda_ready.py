"""What a first CUDA user would hit, simulated on the CPU: a GPU image without torch-fidelity, GPUs
that are not visible, device strings, CUDA RNG states, autocast, cuDNN flags, precision and periodic
defaults, and the host work of a training step."""

from __future__ import annotations

import gc
import io
import os
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch
from rich.console import Console

import cmzoo.run as run_module
from cmzoo.cli import main
from cmzoo.config import make_config
from cmzoo.data import ImageDataset
from cmzoo.device import resolve_device
from cmzoo.errors import ConfigError
from cmzoo.train import distributed

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    return str(path)


@pytest.fixture(scope="module")
def func_run(tmp_path_factory, npz) -> str:
    """A function-backbone run of two steps at 16 px."""
    out = str(tmp_path_factory.mktemp("runs") / "func")
    assert main(["train", "--backbone", "func", "--data", npz, "--resolution", "16", "--steps", "2", "--batch-size", "4",
                 "--pretrain-steps", "0", "--sample-every", "0", "--device", "cpu",
                 "--out", out]) == 0
    return out


def cmzoo_without(module: str, *args: str) -> subprocess.CompletedProcess:
    """`cmzoo ARGS` in a fresh process where `module` cannot be imported (as on a GPU image without it)."""
    code = (f"import sys; sys.modules[{module!r}] = None; from cmzoo.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, timeout=300)


# ---- 1. torch-fidelity only where the metrics need it ------------------------------------------------


def test_bench_params_runs_without_torch_fidelity_and_eval_says_what_to_install(tmp_path, npz):
    r = cmzoo_without("torch_fidelity", "bench", "--only", "params", "--backbones", "dit", "--resolutions", "16",
                      "--out", str(tmp_path / "bench"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "bench" / "results.json").is_file()
    r = cmzoo_without("torch_fidelity", "eval", "--images", npz, "--data", npz, "--out", str(tmp_path / "e.json"))
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1, err
    assert "need torch-fidelity" in err and "pip install 'torch-fidelity>=0.3'" in err
