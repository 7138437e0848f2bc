"""What Trainer.train_step feeds the loss and the EMAs: σ pairs, update order and rates, fp16 skipped steps."""

import io
import math

import pytest
import torch
from rich.console import Console

from cmzoo.config import make_config
from cmzoo.engine import recipes as recipes_module
from cmzoo.engine.schedules import karras_sigmas
from cmzoo.train import trainer as trainer_module
from cmzoo.train.trainer import Trainer


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _trainer(tmp_path, **overrides):
    cfg = make_config(**{**dict(backbone="dit", preset="tiny", resolution=16, shapes_count=8, batch_size=4, steps=2,
                                recipe="ct-short", sample_every=0, denoise_every=0, device="cpu",
                                out=str(tmp_path / "run")), **overrides})
    return Trainer(cfg, console=Console(file=io.StringIO()))


def test_the_loss_gets_sigma_i_and_the_next_grid_point(tmp_path, monkeypatch):
    calls = []
    real = recipes_module.consistency_loss

    def recorder(model, target, x, sigma, sigma_next, noise, weight, distance, labels):
        calls.append((sigma.tolist(), sigma_next.tolist()))
        return real(model, target, x, sigma, sigma_next, noise, weight, distance, labels)

    monkeypatch.setattr(recipes_module, "consistency_loss", recorder)
    trainer = _trainer(tmp_path)
    for k in range(2):
        trainer.train_step()
        grid = karras_sigmas(trainer.recipe.num_scales(k, trainer.config.steps)).tolist()  # N = 2, then 6
        sigma, sigma_next = calls[k]
        assert set(sigma) <= set(grid[:-1])
        assert sigma_next == [grid[grid.index(s) + 1] for s in sigma]
    assert len(calls) == 2


def test_optimizer_step_then_target_ema_with_this_steps_mu_then_sample_ema(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    names = {id(trainer.target): "target", id(trainer.ema): "ema"}
    events = []
    real_ema, real_step = trainer_module.ema_update, trainer.optimizer.step

    def ema_recorder(target, source, rate):
        assert source is trainer.online
        events.append((names[id(target)], rate))
        real_ema(target, source, rate)

    def step_recorder(*args, **kwargs):
        events.append("optimizer.step")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "ema_update", ema_recorder)
    trainer.optimizer.step = step_recorder
    recipe, cfg = trainer.recipe, trainer.config
    mus = [recipe.target_ema(recipe.num_scales(k, cfg.steps)) for k in range(2)]
    assert mus == [pytest.approx(0.81), pytest.approx(0.9587, abs=1e-4)] and cfg.sample_ema == 0.995  # all distinct
    for mu in mus:
        events.clear()
        trainer.train_step()
        assert events == ["optimizer.step", ("target", mu), ("ema", cfg.sample_ema)]


def _weights(trainer):
    return {name: [p.detach().clone() for p in getattr(trainer, name).parameters()] for name in ("online", "target", "ema")}


def _changed(before, after):
    return {name: any(not torch.equal(a, b) for a, b in zip(before[name], after[name])) for name in before}


def test_an_fp16_step_skipped_by_the_grad_scaler_updates_neither_ema(tmp_path):
    trainer = _trainer(tmp_path, precision="fp16")
    before, scale = _weights(trainer), trainer.scaler.get_scale()
    trainer.train_step()  # a normal step moves all three (and makes target, ema ≠ online)
    assert _changed(before, _weights(trainer)) == {"online": True, "target": True, "ema": True}
    assert trainer.scaler.get_scale() == scale
    hooks = [p.register_hook(lambda g: torch.full_like(g, float("inf"))) for p in trainer.online.parameters()]
    before = _weights(trainer)
    metrics = trainer.train_step()  # the loss is finite, the gradients are not: GradScaler skips the step
    for hook in hooks:
        hook.remove()
    assert math.isfinite(metrics["loss"])
    assert trainer.scaler.get_scale() == scale / 2
    assert _changed(before, _weights(trainer)) == {"online": False, "target": False, "ema": False}


def test_periodic_work_is_due_on_its_multiples_and_at_the_end_only_when_asked():
    from cmzoo.train.trainer import Periodic

    every_3 = Periodic(3, lambda: None)
    with_end = Periodic(3, lambda: None, at_end=True)
    assert [k for k in range(1, 11) if every_3.due(k, 10)] == [3, 6, 9]
    assert [k for k in range(1, 10) if every_3.due(k, 9)] == [3, 6]  # the loop's own last step is done after it
    assert [k for k in range(1, 11) if with_end.due(k, 10)] == [3, 6, 9, 10]
    assert not any(Periodic(0, lambda: None, at_end=True).due(k, 10) for k in range(1, 11))  # 0: never


def test_ect_consistency_tuning_starts_with_a_fresh_optimizer_state(tmp_path):
    # K = 10 and 40 % denoiser steps: steps 0…3 train the denoiser, step 4 starts consistency tuning.
    trainer = _trainer(tmp_path, recipe="ect", steps=10, pretrain_steps=0)
    assert [k for k in range(10) if trainer.recipe.fresh_optimizer(k, 10)] == [4]

    def adam_steps() -> set[float]:
        return {float(state["step"]) for state in trainer.optimizer.state.values()}

    for _ in range(4):
        trainer.train_step()
    assert adam_steps() == {4.0}
    trainer.train_step()
    assert adam_steps() == {1.0}  # the denoiser's moments are gone, not carried into the first tuning step
    trainer.train_step()
    assert adam_steps() == {2.0}


def test_grid_recipes_never_reset_the_optimizer():
    from cmzoo.registry import get_recipe

    assert not any(get_recipe(name).fresh_optimizer(k, 100) for name in ("ct", "ict", "ct-short") for k in range(101))


# Each recipe's first six steps (dit tiny at 16 px, K = 10, so that ECT's denoiser phase, its switch at step 4
# and its first tuning steps are all in): losses, N(k) or stage, and μ, as the trainer computed them before
# the recipes became classes. Pinned so that a recipe's draws stay the same, from the same generator, in order.
FIRST_STEPS = {
    "ct": ([0.3877758, 0.001397755, 1.235891e-05, 0.0001853164, 0.0001401466, 0.0002836321],
           [2, 48, 68, 83, 96, 107], [0.81, 0.995527, 0.99686, 0.997434, 0.997784, 0.998014]),
    "ict": ([7.672741, 17.11986, 12.66603, 20.22631, 14.76649, 18.51456], [11, 21, 41, 81, 161, 321], [0.0] * 6),
    "ct-short": ([17.15811, 9.439502, 6.93624, 8.69957, 1.838234, 1.053579], [2, 3, 4, 5, 5, 6],
                 [0.81, 0.9, 0.93217, 0.948683, 0.948683, 0.958732]),
    "ict-short": ([7.672741, 14.03559, 9.564356, 18.53552, 12.05289, 26.46641], [11] * 6, [0.0] * 6),
    "ect": ([1.158754, 0.991562, 0.9534667, 1.200351, 23.7624, 18.93147], [-1, -1, -1, -1, 0, 0], [0.0] * 6),
}


@pytest.mark.parametrize("name", sorted(FIRST_STEPS))
def test_every_recipes_first_steps_are_pinned(tmp_path, name):
    losses, schedule, mus = FIRST_STEPS[name]
    trainer = _trainer(tmp_path, recipe=name, steps=10, distance="l2" if name == "ct" else None)  # ct: no LPIPS
    metrics = [trainer.train_step() for _ in losses]
    assert [m["loss"] for m in metrics] == pytest.approx(losses, rel=1e-4)
    assert [m.get("num_scales", m.get("stage")) for m in metrics] == schedule
    assert [m["target_ema"] for m in metrics] == pytest.approx(mus, abs=1e-6)


@pytest.mark.parametrize("backbone, given, expected", [("func", None, 10.0), ("func", 1.0, 1.0), ("dit", None, 1.0)])
def test_the_cpu_default_sharpens_the_boundary_for_function_backbones_only(tmp_path, backbone, given, expected):
    trainer = _trainer(tmp_path, backbone=backbone, boundary_scale=given, pretrain_steps=0)
    assert trainer.config.boundary_scale == expected and trainer.online.boundary_scale == expected
