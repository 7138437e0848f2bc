"""`--log tensorboard`: the event files hold the same scalars and grids as metrics.jsonl, at the same
steps, and a resumed run shows every step once; without tensorboard the flag is a one-line error."""

import json
import sys

import pytest

from cmzoo.cli import main
from cmzoo.rundir import scalar_items

pytest.importorskip("tensorboard", reason="the dev extra installs tensorboard: pip install -e '.[dev]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

CONFIG = """
backbone = "dit"
resolution = 16
shapes_count = 8
batch_size = 4
steps = 10
recipe = "ct-short"
log_every = 2
denoise_every = 5
sample_every = 5
checkpoint_every = 4
device = "cpu"
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def events(logdir):
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_scalars_and_grids_at_their_steps_and_once_after_a_resume(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG)
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--log", "tensorboard", "--out", str(run)]) == 0
    logged = events(run)
    tags = logged.Tags()
    for tag in ("loss", "num_scales", "target_ema", "lr", "it_per_s"):
        assert [e.step for e in logged.Scalars(tag)] == [2, 4, 6, 8, 10], tag
    sigmas = [tag for tag in tags["scalars"] if tag.startswith("denoising_distance/")]
    assert len(sigmas) == 8 and "denoising_distance/0.5" in sigmas
    assert [e.step for e in logged.Scalars("denoising_distance/0.5")] == [0, 5, 10]
    assert tags["images"] == ["samples/16x16"]
    grids = logged.Images("samples/16x16")
    assert [e.step for e in grids] == [5, 10] and (grids[0].height, grids[0].width) == (8 * 17 + 1,) * 2  # 64 samples
    jsonl = {r["step"]: r["loss"] for r in records(run) if "loss" in r}
    assert [e.value for e in logged.Scalars("loss")] == pytest.approx([jsonl[s] for s in (2, 4, 6, 8, 10)])

    # A crash after the checkpoint of step 8: steps 9 and 10 were logged, then lost with their checkpoint.
    (run / "checkpoints" / "step_00000010.safetensors").unlink()
    assert main(["train", "--resume", str(run)]) == 0
    logged = events(run)
    for tag in ("loss", "lr", "denoising_distance/0.5"):
        steps = [e.step for e in logged.Scalars(tag)]
        assert steps == sorted(set(steps)) and steps[-1] == 10, tag
    assert [e.step for e in logged.Images("samples/16x16")] == [5, 10]
    resumed = [r["loss"] for r in records(run) if r.get("step") == 10 and "loss" in r][-1]
    assert logged.Scalars("loss")[-1].value == pytest.approx(resumed)  # the resumed step, not the lost one


def test_function_backbones_log_a_grid_per_render_size_and_pretraining_as_its_own_run(tmp_path):
    run = tmp_path / "run"
    config = CONFIG.replace('"dit"', '"func"').replace("steps = 10", "steps = 2")
    config = config.replace("log_every = 2", "log_every = 1")
    (tmp_path / "run.toml").write_text(config + "pretrain_steps = 3\n")
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--log", "tensorboard", "--out", str(run)]) == 0
    logged = events(run)
    assert logged.Tags()["images"] == ["samples/16x16", "samples/32x32"]
    assert [e.step for e in logged.Images("samples/32x32")] == [2]
    pretraining = events(run / "pretrain")
    assert [e.step for e in pretraining.Scalars("mse")] == [1, 2, 3] and "psnr" in pretraining.Tags()["scalars"]
    assert "mse" not in logged.Tags()["scalars"]


def test_jsonl_only_by_default(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG.replace("steps = 10", "steps = 2"))
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "run")]) == 0
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert [r["step"] for r in records(tmp_path / "run") if "lr" in r] == [2]


def test_missing_tensorboard_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    (tmp_path / "run.toml").write_text(CONFIG)
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--log", "tensorboard",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "cmzoo: error: --log tensorboard needs tensorboard: pip install tensorboard"
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_scalar_tags_are_the_record_keys():
    record = {"step": 3, "loss": 0.5, "eval": {"1-step_16px": {"fid": 80.0, "reference_name": "shapes@16",
                                                                "inception_score": None}}, "ok": True}
    assert list(scalar_items(record)) == [("loss", 0.5), ("eval/1-step_16px/fid", 80.0)]
