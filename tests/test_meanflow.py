"""MeanFlow (engine/meanflow.py and the `meanflow` recipe): the loss against closed forms, the sampler's
steps, the JVP's pitfalls (fused attention, DDP, shared random draws), func's image parameterisation,
and the capability check that refuses backbones without a second time input."""

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from rich.console import Console
from torch import nn
from torch.func import jvp
from torch.nn.parallel import DistributedDataParallel

import cmzoo
from cmzoo.cli import main
from cmzoo.engine.ema import frozen_copy
from cmzoo.engine.meanflow import (
    AverageVelocity, adaptive_weight, linear_path, meanflow_loss, meanflow_sample, meanflow_sample_at_sizes,
    meanflow_target, path_velocity, sample_times, time_schedule, total_derivative, velocity_from_image)
from cmzoo.errors import BackboneError, ConfigError
from cmzoo.registry import get_recipe, reload_plugins
from cmzoo.run import generate, load_run
from cmzoo.testing import check_recipe
from cmzoo.train import Trainer, make_config, train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

B, RES = 3, 16


class LinearVelocity(nn.Module):
    """u(z, r, t) = a·z + b·t + c·r: du/dt along the path is a·v + b."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (nn.Parameter(torch.tensor(v)) for v in (0.7, -1.3, 0.4))

    def forward(self, z, r, t, labels=None):
        return self.a * z + self.b * t.view(-1, 1, 1, 1) + self.c * r.view(-1, 1, 1, 1)


def _draws(generator_seed=0):
    g = torch.Generator().manual_seed(generator_seed)
    x = torch.rand(B, 3, RES, RES, generator=g) * 2 - 1
    noise = torch.randn(B, 3, RES, RES, generator=g)
    t = torch.tensor([0.9, 0.6, 0.3])
    return x, noise, t, torch.tensor([0.2, 0.6, 0.1])


def _perturbed(model):
    """The model with every weight moved a little: DiT's adaLN-Zero output is exactly 0 before training."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def _tiny(backbone):
    spec = cmzoo.get_backbone(backbone)
    torch.manual_seed(0)
    net = cmzoo.create_backbone(backbone, resolution=RES)
    return get_recipe("meanflow").model(net, spec.capabilities.function_output)


# ---- the loss against closed forms ---------------------------------------------------------------------


def test_the_jvp_term_of_a_linear_u_is_its_analytic_derivative():
    model = LinearVelocity()
    x, noise, t, r = _draws()
    z, v = linear_path(x, noise, t), path_velocity(x, noise)
    dudt = total_derivative(model, z, r, t, v)
    torch.testing.assert_close(dudt, model.a.detach() * v + model.b.detach())
    # The whole loss, by hand: u_tgt = v − (t − r)(a·v + b), w = 1/(‖Δ‖² + c).
    u = model(z, r, t)
    u_tgt = v - (t - r).view(-1, 1, 1, 1) * (0.7 * v - 1.3)
    err = (u - u_tgt).pow(2).flatten(1).sum(1)
    expected = (err / (err + 1e-3)).mean()
    torch.testing.assert_close(meanflow_loss(model, frozen_copy(model), x, t, r, noise), expected)


def test_with_r_equal_to_t_the_loss_is_weighted_flow_matching():
    model = _perturbed(_tiny("dit"))
    x, noise, t, _ = _draws()
    v = path_velocity(x, noise)
    assert torch.equal(meanflow_target(v, torch.randn_like(v), t, t), v)
    err = (model(linear_path(x, noise, t), t, t) - v).pow(2).flatten(1).sum(1)
    expected = (adaptive_weight(err.detach()) * err).mean()
    torch.testing.assert_close(meanflow_loss(model, frozen_copy(model), x, t, t, noise), expected)


def test_the_adaptive_weight_and_the_time_draws():
    assert adaptive_weight(torch.tensor([1.0]), power=1.0, c=1e-3).item() == pytest.approx(1 / 1.001)
    assert adaptive_weight(torch.tensor([3.0]), power=0.5, c=1.0).item() == pytest.approx(0.5)
    t, r = sample_times(10_000, generator=torch.Generator().manual_seed(0))
    assert ((0 < r) & (r <= t) & (t < 1)).all()
    assert (r < t).float().mean().item() == pytest.approx(0.25, abs=0.02)


def test_the_jvp_tangents_are_v_0_1_by_finite_differences():
    model = _perturbed(_tiny("dit")).eval()
    x, noise, t, r = _draws()
    z, v = linear_path(x, noise, t), path_velocity(x, noise)
    h = 1e-4  # a larger h leaves the linear range of the time embeddings' highest frequencies
    with torch.no_grad():
        fd = (model(z + h * v, r, t + h) - model(z - h * v, r, t - h)) / (2 * h)
    dudt = total_derivative(model, z, r, t, v)
    assert (dudt - fd).norm() < 0.02 * fd.norm()


# ---- sampling --------------------------------------------------------------------------------------------


def test_one_step_is_z1_minus_u_at_0_1_and_two_steps_go_through_one_half():
    model = _perturbed(_tiny("dit")).eval()
    with torch.no_grad():
        z1 = torch.randn(B, 3, RES, RES)
        zeros, ones = torch.zeros(B), torch.ones(B)
        torch.testing.assert_close(meanflow_sample(model, z1), z1 - model(z1, zeros, ones))
        half = z1 - 0.5 * model(z1, zeros + 0.5, ones)
        torch.testing.assert_close(meanflow_sample(model, z1, time_schedule(2)), half - 0.5 * model(half, zeros, ones / 2))
    assert time_schedule(4) == [1, 0.75, 0.5, 0.25]
    with pytest.raises(ConfigError, match="must start at 1 and decrease strictly"):
        time_schedule([0.5, 0.2])


# ---- func: the image parameterisation ---------------------------------------------------------------------


def test_func_predicts_the_image_and_its_last_step_renders_at_any_size():
    model = _tiny("func").eval()
    assert model.predicts == "image" and _tiny("dit").predicts == "velocity"
    z, t, r = torch.randn(B, 3, RES, RES), torch.tensor([1.0, 0.5, 0.02]), torch.zeros(B)
    with torch.no_grad():
        x_hat = model.net(z, t, None, c_noise_2=t - r)
        torch.testing.assert_close(model(z, r, t), velocity_from_image(z, x_hat, t))
        # u does not depend on r except through the conditioning, and z − t·u lands on x̂ for t ≥ 0.05.
        torch.testing.assert_close((z - t.view(-1, 1, 1, 1) * model(z, r, t))[:2], x_hat[:2])
        images, fn = meanflow_sample_at_sizes(model, z, [1.0, 0.5], sizes=[(RES, RES), (24, 40)])
        torch.testing.assert_close(images[(RES, RES)], meanflow_sample(model, z, [1.0, 0.5]), atol=1e-5, rtol=1e-5)
    assert images[(24, 40)].shape == (B, 3, 24, 40) and len(fn) == B


# ---- the JVP's pitfalls -----------------------------------------------------------------------------------


def test_fused_attention_has_no_forward_derivative_so_the_jvp_uses_the_math_kernel():
    model = _tiny("dit")
    x, noise, t, r = _draws()
    z, v = linear_path(x, noise, t), path_velocity(x, noise)
    tangents = (v, torch.zeros_like(r), torch.ones_like(t))
    with pytest.raises((NotImplementedError, RuntimeError)):  # the CPU flash kernel, as CUDA's fused ones
        jvp(lambda *a: model(*a), (z, r, t), tangents)
    assert torch.isfinite(total_derivative(model, z, r, t, v)).all()


def test_the_jvp_in_fp32_under_bf16_autocast():
    model = _tiny("dit")
    x, noise, t, r = _draws()
    z, v = linear_path(x, noise, t), path_velocity(x, noise)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dudt = total_derivative(model, z, r, t, v)
    assert dudt.dtype == torch.float32
    torch.testing.assert_close(dudt, total_derivative(model, z, r, t, v))


def test_under_ddp_the_jvp_runs_on_the_target_and_the_gradient_goes_through_the_wrapper():
    online = _tiny("dit")
    target = frozen_copy(online)
    calls = {"online": 0, "target": 0}
    online.register_forward_pre_hook(lambda *_: calls.__setitem__("online", calls["online"] + 1))
    target.register_forward_pre_hook(lambda *_: calls.__setitem__("target", calls["target"] + 1))
    x, noise, t, r = _draws()
    plain = meanflow_loss(online, target, x, t, r, noise)
    plain.backward()
    expected = [p.grad.clone() for p in online.parameters()]
    online.zero_grad()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(online)
        calls.update(online=0, target=0)
        loss = meanflow_loss(wrapped, target, x, t, r, noise)
        loss.backward()  # DDP's reducer sees exactly one forward for its one backward
    finally:
        dist.destroy_process_group()
    assert calls == {"online": 1, "target": 1}
    torch.testing.assert_close(loss, plain)
    for got, want in zip((p.grad for p in online.parameters()), expected):
        torch.testing.assert_close(got, want)
    assert all(p.grad is None for p in target.parameters())


class Dropped(nn.Module):
    """u = dropout(z)·t, remembering every mask it drew."""

    def __init__(self) -> None:
        super().__init__()
        self.drop, self.masks = nn.Dropout(0.5), []

    def forward(self, z, r, t, labels=None):
        out = self.drop(torch.ones_like(z))
        self.masks.append(out.detach().clone())
        return out * z * t.view(-1, 1, 1, 1)


def test_both_forwards_draw_the_same_dropout_masks():
    online = Dropped()
    x, noise, t, r = _draws()
    meanflow_loss(online, online, x, t, r, noise)
    assert len(online.masks) == 2 and torch.equal(online.masks[0], online.masks[1])
    assert 0 < (online.masks[0] == 0).float().mean() < 1


def test_both_forwards_of_func_draw_the_same_coordinate_noise(monkeypatch):
    import cmzoo_func.image_function as image_function

    drawn, real = [], image_function.variational_coordinates

    def recorder(*args, **kwargs):
        drawn.append(real(*args, **kwargs).detach().clone())
        return drawn[-1]

    monkeypatch.setattr(image_function, "variational_coordinates", recorder)
    online = _tiny("func").train()
    x, noise, t, r = _draws()
    meanflow_loss(online, frozen_copy(online), x, t, r, noise)
    assert len(drawn) == 2 and torch.equal(drawn[0], drawn[1])


# ---- the second time input --------------------------------------------------------------------------------


def test_the_second_time_input_exists_only_for_the_recipe_that_asks_for_it():
    ct_keys = set(get_recipe("ect").model(cmzoo.create_backbone("dit", resolution=RES), False).net.state_dict())
    assert not any(k.startswith("t2_embedder") for k in ct_keys)  # ct checkpoints keep their keys
    net = cmzoo.create_backbone("func", resolution=RES)
    x, cn = torch.randn(2, 3, RES, RES), torch.full((2,), 300.0)
    with torch.no_grad():
        before = net.eval()(x, cn)
        model = get_recipe("meanflow").model(net, True)
        assert {k for k in model.net.state_dict() if k.startswith("t2_embedder")}
        torch.testing.assert_close(net(x, cn, c_noise_2=cn / 3), before)  # zero-initialised: unchanged at first


# ---- the recipe in the trainer and the CLI ----------------------------------------------------------------


@pytest.mark.parametrize("recipe,backbone", [("meanflow", "dit"), ("meanflow", "func"), ("meanflow-x", "dit")])
def test_meanflow_passes_the_recipe_conformance_helper(recipe, backbone):
    check_recipe(recipe, backbone=backbone, resolution=RES)


def test_meanflow_x_has_a_pixel_backbone_predict_the_image_and_leaves_function_backbones_as_they_were():
    z, t, r = torch.randn(2, 3, RES, RES), torch.tensor([0.5, 1.0]), torch.tensor([0.0, 0.25])
    dit = replace(get_recipe("meanflow-x"), time_scale=1000).model(cmzoo.create_backbone("dit", resolution=RES), False)
    nn.init.normal_(dit.net.final_layer.linear.weight, std=0.02)  # a non-zero x̂
    with torch.no_grad():
        x_hat = dit.net(z, 1000 * t, None, c_noise_2=1000 * (t - r))  # the recipe's time scale reaches the embeddings
        torch.testing.assert_close(dit(z, r, t), (z - x_hat) / t.view(-1, 1, 1, 1))
    assert get_recipe("meanflow").model(cmzoo.create_backbone("dit", resolution=RES), False).predicts == "velocity"
    assert get_recipe("meanflow-x").model(cmzoo.create_backbone("func", resolution=RES), True).predicts == "image"


def test_backbones_without_a_second_time_input_are_refused_in_one_line(tmp_path, capsys):
    config = make_config(backbone="unet", recipe="meanflow", resolution=RES, out=str(tmp_path / "run"))
    with pytest.raises(BackboneError, match="recipe 'meanflow' needs capability 'second_time_input', which backbone "
                                            "'unet' lacks; use a backbone with it: dit, func"):
        Trainer(config, console=Console(file=io.StringIO()))
    assert main(["train", "--backbone", "uvit", "--recipe", "meanflow", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs capability 'second_time_input'" in err, err
    with pytest.raises(ConfigError, match="recipe 'meanflow' compares with l2 only, not 'lpips'"):
        make_config(recipe="meanflow", distance="lpips").resolved()


def test_func_trains_with_meanflow_and_samples_at_two_sizes(tmp_path):
    run = train(backbone="func", recipe="meanflow", resolution=RES, steps=2, batch_size=4, shapes_count=8,
                pretrain_steps=0, sample_every=0, denoise_every=2, grid_size=4, out=str(tmp_path / "run"))
    loaded = load_run(run.directory)
    assert isinstance(loaded.model, AverageVelocity) and loaded.model.predicts == "image"
    images, functions = generate(loaded, n=2, steps=2, sizes=[(RES, RES), (32, 32)], functions=True)
    assert images[(32, 32)].shape == (2, 3, 32, 32) and len(functions) == 2
    fresh, _ = generate(run, n=2, steps=2, sizes=[(RES, RES)])
    torch.testing.assert_close(fresh[(RES, RES)], images[(RES, RES)])


def test_the_first_jvp_of_a_process_shows_no_warning_of_torchs_own(tmp_path):
    # Forward AD loads torch's JVP decompositions once per process, so this needs a fresh one.
    code = ("import torch\nfrom cmzoo.engine.meanflow import total_derivative\n"
            "z = torch.randn(2, 3, 4, 4); t = torch.rand(2)\n"
            "dudt = total_derivative(lambda z, r, t, labels: z * t.view(-1, 1, 1, 1), z, 0 * t, t, torch.ones_like(z))\n"
            "assert torch.allclose(dudt, t.view(-1, 1, 1, 1) + z)\n")
    r = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert r.returncode == 0 and not r.stderr, r.stderr


def test_the_stability_probe_logs_both_velocities_of_both_networks(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import meanflow_stability

    try:
        rows = meanflow_stability.main(["--data", "shapes", "--resolution", str(RES), "--batch-size", "4", "--steps", "3",
                                        "--every", "2", "--time-scale", "1000", "--out", str(tmp_path / "s.jsonl")])
    finally:
        reload_plugins()  # forget the probe's recipe variant
    assert [r["step"] for r in rows] == [2, 3] and all(r["time_scale"] == 1000 and r["lr"] == 1e-3 for r in rows)
    assert all(v > 0 for r in rows for net in ("online", "ema") for v in r[net].values())
    assert [json.loads(line)["step"] for line in (tmp_path / "s.jsonl").read_text().splitlines()] == [2, 3]
