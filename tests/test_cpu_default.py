"""The CPU default (`cmzoo train --backbone func` with no other argument): its configuration, its
automatic reconstruction pre-training and a start line that explains itself."""

import io
import json

import torch
from rich.console import Console

from cmzoo.config import CPU_RECIPE, DEFAULT_PRETRAIN_STEPS, FUNCTION_BOUNDARY_SCALE, TrainConfig, make_config
from cmzoo.data import load_dataset
from cmzoo.train.trainer import Trainer


def test_the_default_configuration():
    cfg, notices = TrainConfig().resolved()
    assert (cfg.backbone, cfg.preset, cfg.data, cfg.resolution, cfg.steps) == ("func", "tiny", None, 32, 300)
    assert (cfg.recipe, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.distance) == ("ect", "adam", 1e-3, 32, "pseudo_huber")
    assert CPU_RECIPE == "ect" and notices == []
    paper, _ = TrainConfig(preset="paper").resolved()
    assert (paper.recipe, paper.optimizer, paper.lr) == ("ct", "radam", 5e-4)  # the paper's recipe is untouched


def _trainer(tmp_path, console=None, **fields) -> Trainer:
    data = load_dataset("shapes", 16, 8)
    cfg = make_config(resolution=16, shapes_count=8, batch_size=4, sample_every=0, denoise_every=0,
                      checkpoint_every=0, out=str(tmp_path / "run"), **fields)
    return Trainer(cfg, console=console or Console(quiet=True), data=data)


def test_pretraining_steps_are_resolved_per_run(tmp_path):
    assert _trainer(tmp_path, steps=300).config.pretrain_steps == DEFAULT_PRETRAIN_STEPS == 500
    assert _trainer(tmp_path, steps=3).config.pretrain_steps == 6  # a smoke run stays short
    assert _trainer(tmp_path, steps=300, pretrain_steps=0).config.pretrain_steps == 0
    assert _trainer(tmp_path, backbone="dit", steps=300).config.pretrain_steps == 0  # no pretrain capability


def test_the_config_resolves_the_function_defaults_before_any_network_is_built():
    func, _ = TrainConfig(backbone="func", steps=300).resolved()
    dit, _ = TrainConfig(backbone="dit", steps=300).resolved()
    paper, _ = TrainConfig(backbone="func", preset="paper", steps=300).resolved()
    assert (func.boundary_scale, func.pretrain_steps) == (FUNCTION_BOUNDARY_SCALE, DEFAULT_PRETRAIN_STEPS)
    assert (dit.boundary_scale, dit.pretrain_steps) == (1.0, 0) and (paper.boundary_scale, paper.pretrain_steps) == (1.0, 0)
    given, _ = TrainConfig(backbone="func", boundary_scale=3.0, pretrain_steps=7, init_from="run").resolved()
    assert (given.boundary_scale, given.pretrain_steps) == (3.0, 7)
    assert TrainConfig(backbone="func", init_from="run").resolved()[0].pretrain_steps == 0  # starts from weights


def test_pretraining_runs_first_and_starts_both_emas_from_its_weights(tmp_path):
    out = io.StringIO()
    trainer = _trainer(tmp_path, console=Console(file=out, width=200), steps=2, log_every=1)
    before = [p.clone() for p in trainer.online.parameters()]
    trainer.run()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    pre = [r for r in lines if "pretrain_step" in r]
    assert [r["pretrain_step"] for r in pre] == [1, 2, 3, 4] and all(r["psnr"] > 0 for r in pre)
    assert lines.index(pre[-1]) < next(i for i, r in enumerate(lines) if "loss" in r)  # before consistency
    text = out.getvalue()
    assert "reconstruction pre-training first: 4 steps" in text and "DESIGN" not in text
    assert "recipe ect: denoiser (EDM loss)" in text

    fresh = _trainer(tmp_path / "again", steps=2)
    fresh.run_dir.path.mkdir(parents=True)
    fresh.pretrain()
    moved = any(not torch.equal(a, b) for a, b in zip(before, fresh.online.parameters()))
    same = all(torch.equal(o, t) and torch.equal(o, e) for o, t, e in
               zip(fresh.online.parameters(), fresh.target.parameters(), fresh.ema.parameters()))
    assert moved and same
