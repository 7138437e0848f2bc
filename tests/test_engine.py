"""Engine formulas against closed forms (DESIGN §3)."""

import math

import numpy as np
import pytest
import torch

from cmzoo.engine import schedules
from cmzoo.engine.distances import l2, pseudo_huber, pseudo_huber_c
from cmzoo.engine.ema import ema_update
from cmzoo.engine.parameterization import (
    SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, ConsistencyFunction, boundary_sigma, c_in, c_noise, c_out, c_skip,
)
from cmzoo.engine.recipes import RECIPES
from cmzoo.registry import get_recipe
from cmzoo.errors import ConfigError


class ConstantNet(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x_in, c_noise, labels=None):
        return torch.full_like(x_in, self.value)


def test_boundary_condition_is_exact():
    f = ConsistencyFunction(ConstantNet(123.0))
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(f(x, torch.full((4,), SIGMA_MIN)), x)


def test_scalings_closed_forms():
    s = torch.tensor([SIGMA_MIN, 0.5, 1.0, SIGMA_MAX], dtype=torch.float64)
    assert c_skip(s)[0] == 1 and c_out(s)[0] == 0
    torch.testing.assert_close(c_skip(s)[1], torch.tensor(0.25 / ((0.5 - SIGMA_MIN) ** 2 + 0.25), dtype=torch.float64))
    torch.testing.assert_close(c_out(s)[2], torch.tensor(0.5 * (1 - SIGMA_MIN) / math.sqrt(1.25), dtype=torch.float64))
    torch.testing.assert_close(c_in(s)[2], torch.tensor(1 / math.sqrt(1.25), dtype=torch.float64))
    torch.testing.assert_close(c_noise(torch.tensor([1.0, math.e])), torch.tensor([0.0, 250.0]))
    # c_skip(σ_max) ≈ 3.9e-5, as the skip term dropped for any-size one-step sampling
    assert abs(c_skip(torch.tensor(SIGMA_MAX)).item() - 3.9e-5) < 1e-6


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_boundary_condition_holds_for_every_boundary_scale(scale):
    f = ConsistencyFunction(ConstantNet(123.0), boundary_scale=scale)
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(f(x, torch.full((4,), SIGMA_MIN)), x)


def test_boundary_scale_moves_c_skip_and_c_out_but_not_c_in():
    sigma = torch.tensor([0.66], dtype=torch.float64)
    paper = ConsistencyFunction(ConstantNet(0.0)).scalings(sigma, 1)
    sharp = ConsistencyFunction(ConstantNet(0.0), boundary_scale=10.0).scalings(sigma, 1)
    torch.testing.assert_close(torch.stack(paper), torch.stack([c_skip(sigma), c_out(sigma), c_in(sigma)]))
    # LCM's timestep scaling: c_skip = σ_data² / ((s(σ − σ_min))² + σ_data²) — 0.0057 at σ = 0.66 against 0.37
    expected_skip = SIGMA_DATA**2 / ((10 * (0.66 - SIGMA_MIN)) ** 2 + SIGMA_DATA**2)
    assert sharp[0].item() == pytest.approx(expected_skip) and expected_skip < 0.006 < 0.36 < paper[0].item()
    torch.testing.assert_close(sharp[1], c_out(boundary_sigma(sigma, 10.0)))
    torch.testing.assert_close(sharp[2], paper[2])  # the network's input keeps unit variance


def test_c_in_gives_unit_variance():
    x0 = torch.randn(200_000) * SIGMA_DATA
    for sigma in (0.1, 1.0, 10.0):
        x = x0 + sigma * torch.randn_like(x0)
        assert abs((c_in(torch.tensor(sigma)) * x).std().item() - 1) < 0.01


def test_zero_network_is_the_gaussian_optimal_denoiser():
    # For data ~ N(0, σ_data²) the MMSE denoiser is σ_data²/(σ²+σ_data²)·x; F ≡ 0 gives c_skip·x,
    # which matches it up to the σ_min shift.
    f = ConsistencyFunction(ConstantNet(0.0))
    x = torch.randn(2, 3, 4, 4)
    sigma = torch.full((2,), 2.0)
    expected = SIGMA_DATA**2 / ((2.0 - SIGMA_MIN) ** 2 + SIGMA_DATA**2) * x
    torch.testing.assert_close(f(x, sigma), expected)


def test_karras_grid_ends_and_monotone():
    for n in (2, 7, 151, 1281):
        s = schedules.karras_sigmas(n)
        assert len(s) == n and s[0].item() == pytest.approx(SIGMA_MIN) and s[-1].item() == pytest.approx(SIGMA_MAX)
        assert (s[1:] > s[:-1]).all()
    s = schedules.karras_sigmas(3, 1.0, 16.0, 2.0)  # (1 + i/2·(4 − 1))² → 1, 6.25, 16
    torch.testing.assert_close(s, torch.tensor([1.0, 6.25, 16.0]))


def test_ct_curriculum_ends():
    assert schedules.ct_num_scales(0, 1000) == 2
    assert schedules.ct_num_scales(1000, 1000) == 151
    assert schedules.ct_num_scales(0, 10, 2, 6) == 2 and schedules.ct_num_scales(10, 10, 2, 6) == 7
    ns = [schedules.ct_num_scales(k, 1000) for k in range(1001)]
    assert ns == sorted(ns)


def test_ct_curriculum_midpoints_match_the_reference_code():
    # openai/consistency_models cm/script_util.py create_ema_and_scales_fn, "progressive" ct
    s0, s1, K = 2, 150, 1000
    for k in (K // 2, K // 3, K // 7):
        scales = np.ceil(np.sqrt((k / K) * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1).astype(np.int32)
        assert schedules.ct_num_scales(k, K, s0, s1) == np.maximum(scales, 1) + 1
    assert schedules.ct_num_scales(500, 1000) == 107  # ⌈√(22797/2 + 4) − 1⌉ + 1 = ⌈105.78⌉ + 1


def test_ct_target_ema_follows_the_reference_code():
    assert schedules.ct_target_ema(2) == pytest.approx(0.81)
    assert schedules.ct_target_ema(151) == pytest.approx(0.998596, abs=1e-6)


def test_ict_curriculum_ends_and_doublings():
    K = 800  # K' = ⌊800 / (log₂ 128 + 1)⌋ = 100
    assert schedules.ict_num_scales(0, K) == 11
    assert schedules.ict_num_scales(99, K) == 11 and schedules.ict_num_scales(100, K) == 21
    assert schedules.ict_num_scales(K, K) == 1281


def test_lognormal_index_probabilities():
    sigmas = schedules.karras_sigmas(1281)
    p = schedules.lognormal_index_probs(sigmas)
    assert len(p) == 1280 and p.sum().item() == pytest.approx(1.0, abs=1e-5) and (p >= 0).all()
    # The interval holding σ = e^{P_mean} is where the log-normal density, per unit ln σ, peaks.
    density = p.double() / torch.log(sigmas[1:] / sigmas[:-1]).double()
    peak = density.argmax().item()
    assert sigmas[peak].item() <= math.exp(-1.1) <= sigmas[peak + 1].item() * 1.05
    idx = schedules.sample_lognormal_indices(sigmas, 20000, torch.Generator().manual_seed(0))
    assert idx.min() >= 0 and idx.max() <= 1279


def test_lognormal_index_probabilities_are_the_erf_differences():
    sigmas = schedules.karras_sigmas(11).tolist()
    for p_mean, p_std in ((-1.1, 2.0), (0.5, 1.0)):
        cdf = [math.erf((math.log(s) - p_mean) / (math.sqrt(2) * p_std)) for s in sigmas]
        p = [b - a for a, b in zip(cdf, cdf[1:])]
        expected = torch.tensor([q / sum(p) for q in p])
        torch.testing.assert_close(schedules.lognormal_index_probs(torch.tensor(sigmas), p_mean, p_std), expected)


def test_uniform_indices_cover_the_intervals():
    idx = schedules.sample_uniform_indices(7, 6000, torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=6)
    assert len(counts) == 6 and counts.min() > 900


def test_ict_weight():
    torch.testing.assert_close(schedules.ict_weight(torch.tensor([1.0]), torch.tensor([1.5])), torch.tensor([2.0]))


def test_pseudo_huber_matches_its_definition():
    x, y = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    c = pseudo_huber_c(3 * 8 * 8)
    assert c == pytest.approx(0.00054 * math.sqrt(192))
    expected = torch.stack([torch.sqrt(((a - b) ** 2).sum() + c**2) - c for a, b in zip(x, y)])
    torch.testing.assert_close(pseudo_huber(x, y, c), expected)
    assert pseudo_huber(x, x, c).abs().max() == 0
    torch.testing.assert_close(l2(x, y), ((x - y) ** 2).mean(dim=(1, 2, 3)))


def test_ema_arithmetic():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 0.9)
    torch.testing.assert_close(a.weight, 0.9 * wa + 0.1 * wb)
    ema_update(a, b, 0.0)
    assert torch.equal(a.weight, b.weight)


def test_recipes_match_the_papers():
    ct, ict = get_recipe("ct"), get_recipe("ict")
    assert (ct.num_scales(0, 100), ct.num_scales(100, 100)) == (2, 151)
    assert ct.target_ema(2) == pytest.approx(0.81) and ct.distance == "lpips" and ct.lr == 5e-4
    assert (ict.num_scales(0, 800), ict.num_scales(800, 800)) == (11, 1281)
    assert ict.target_ema(1281) == 0 and ict.distance == "pseudo_huber"
    s = torch.tensor([1.0]), torch.tensor([1.25])
    assert ict.weight(*s).item() == pytest.approx(4.0) and ct.weight(*s).item() == 1.0
    assert set(RECIPES) >= {"ct", "ict"}
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        get_recipe("nope")


# Σσ, Σσ_next and Σλ of five pairs drawn at steps 0, 3, 4 and 9 of K = 10 from one generator (seed 0), as
# the recipes drew them before they became classes: each family must keep its draws and their order.
PAIR_SUMS = {
    "ct": [(0.01, 400.0, 5.0), (58.7862, 63.36905, 5.0), (34.87541, 37.59344, 5.0), (138.1792, 143.8524, 5.0)],
    "ict": [(16.26558, 34.04621, 6.862771), (2.370482, 2.699471, 205.1701), (1.364761, 1.469942, 375.671),
            (2.894124, 2.917802, 2421.912)],
    "ct-short": [(0.01, 400.0, 5.0), (70.28108, 322.5152, 5.0), (22.73002, 117.7406, 5.0), (3.459177, 14.8567, 5.0)],
    "ict-short": [(16.26558, 34.04621, 6.862771), (1.470595, 4.20229, 25.39405), (0.5902657, 2.005354, 29.03704),
                  (1.470595, 4.20229, 25.39405)],
    "ect": [(0.01, 2.825596, 2251.406), (0.01, 1.680981, 432.9068), (0.9455328, 3.68687, 56.90231),
            (0.0692723, 1.30692, 102.0326)],
}


@pytest.mark.parametrize("name", sorted(PAIR_SUMS))
def test_every_recipe_keeps_its_sigma_pairs(name):
    recipe, g = get_recipe(name), torch.Generator().manual_seed(0)
    sums = [recipe.pairs(k, 10, 5, g) for k in (0, 3, 4, 9)]
    sums = [(p.sigma.sum().item(), p.sigma_next.sum().item(), p.weight.sum().item()) for p in sums]
    for got, pinned in zip(sums, PAIR_SUMS[name]):
        assert got == pytest.approx(pinned, rel=1e-6)


def test_a_registered_distance_is_accepted_by_the_config_and_used_by_the_trainer(tmp_path):
    import re
    from pathlib import Path

    from cmzoo.engine.distances import DISTANCES
    from cmzoo.train import Trainer, make_config

    with pytest.raises(ConfigError, match="unknown distance 'l1'; choose one of l2, pseudo_huber, lpips"):
        make_config(distance="l1")
    # Run the docs example's registration, then train with it.
    doc = (Path(__file__).parents[1] / "docs" / "distances.md").read_text()
    code = re.search(r"```python\n(.*?)\n```", doc, re.S).group(1)
    registration = code.split("\n\n\ncmzoo.train.train")[0]
    try:
        exec(registration, {})
        config = make_config(backbone="dit", distance="l1", steps=1, batch_size=2, out=str(tmp_path), shapes_count=4,
                             backbone_overrides={"depth": 1, "dim": 32, "num_heads": 2})
        x, y = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4) * 0.5
        assert Trainer(config).distance(x, y).tolist() == [0.5, 0.5]
    finally:
        DISTANCES.pop("l1", None)
