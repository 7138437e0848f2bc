"""Every script in examples/ runs end to end with tiny settings and writes what its docstring says."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120", "CMZOO_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--out", str(tmp_path / "out")],
                       cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout}\n{r.stderr}"
    return r


def grid_size(n: int, height: int, width: int) -> tuple[int, int]:
    """PIL (width, height) of `save_grid` of n H×W images: √n per row, 1-px padding."""
    cols = max(1, math.isqrt(n))
    rows = math.ceil(n / cols)
    return cols * (width + 1) + 1, rows * (height + 1) + 1


def test_train_and_sample(tmp_path):
    r = run_example("train_and_sample.py", "--steps", "3", "--batch-size", "4", "--n", "4", tmp_path=tmp_path)
    out = tmp_path / "out"
    assert "trained dit/tiny for 3 steps" in r.stdout
    assert (out / "run" / "checkpoints" / "step_00000003.safetensors").is_file()
    for name in ("samples_1step.png", "samples_2step.png"):
        assert Image.open(out / name).size == grid_size(4, 32, 32)


def test_render_image_function(tmp_path):
    r = run_example("render_image_function.py", "--pretrain-steps", "2", "--steps", "2", "--batch-size", "4",
                    "--n", "2", "--sizes", "32,24x40,64x16", "--render-size", "48x96", tmp_path=tmp_path)
    out = tmp_path / "out"
    assert (out / "pretrain" / "config.json").is_file() and (out / "functions.safetensors").is_file()
    for h, w in ((32, 32), (24, 40), (64, 16)):
        assert Image.open(out / f"samples_{h}x{w}.png").size == grid_size(2, h, w)
    assert Image.open(out / "render_48x96.png").size == grid_size(2, 48, 96)
    assert "INRImageFunction(batch=2" in r.stdout


def test_evaluate_fid(tmp_path):
    try:
        from cmzoo.errors import WeightsError
        from cmzoo.metrics.evaluate import evaluate_images  # noqa: F401
        from cmzoo.metrics.inception import find_inception_weights
    except ImportError as err:
        pytest.skip(f"the metrics API is not available: {err}")
    try:
        find_inception_weights()
    except WeightsError as err:
        pytest.skip(f"Inception weights for FID are not installed: {err}")
    r = run_example("evaluate_fid.py", "--steps", "3", "--batch-size", "4", "--n", "8", tmp_path=tmp_path)
    out = tmp_path / "out"
    result = json.loads((out / "eval.json").read_text())
    assert result["n_samples"] == result["n_reference"] == 8
    assert result["fid"] > 0 and result["inception_score"] is None
    assert "| FID |" in (out / "eval.md").read_text() and "n/a (weights not available)" in r.stdout
    assert Image.open(out / "samples.png").size == grid_size(8, 32, 32)
