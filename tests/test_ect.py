"""The `ect` recipe: its denoiser phase, its stages and its t → r mapping against the reference code."""

import math

import pytest
import torch

from cmzoo.engine import schedules
from cmzoo.engine.distances import l2
from cmzoo.engine.loss import denoising_loss
from cmzoo.engine.parameterization import SIGMA_MIN, ConsistencyFunction, c_skip
from cmzoo.registry import get_recipe


def reference_t_to_r_sigmoid(t: float, stage: int, q: float = 2.0, k: float = 8.0, b: float = 1.0) -> float:
    """locuslab/ect training/loss.py, ECMLoss.t_to_r_sigmoid, written out in scalars."""
    adj = 1 + k * (1 / (1 + math.exp(b * t)))
    decay = 1 / q ** (stage + 1)
    return max(t * (1 - decay * adj), 0.0)


@pytest.mark.parametrize("t, stage", [(1.0, 0), (10.0, 0), (2.0, 2), (0.5, 3), (80.0, 5), (0.05, 7)])
def test_ect_r_matches_the_reference_mapping(t, stage):
    r = schedules.ect_r(torch.tensor([t], dtype=torch.float64), stage).item()
    assert r == pytest.approx(reference_t_to_r_sigmoid(t, stage), rel=1e-12, abs=1e-15)


def test_ect_r_values_by_hand():
    t = torch.tensor([1.0, 10.0, 2.0, 0.5], dtype=torch.float64)
    r = torch.stack([schedules.ect_r(t[i : i + 1], s)[0] for i, s in enumerate((0, 0, 2, 3))])
    # t = 1, stage 0: 1 − ½(1 + 8·σ(−1)) < 0 → 0; t = 10: 10·(1 − ½·1.000363); t = 2, stage 2; t = 0.5, stage 3
    torch.testing.assert_close(r, torch.tensor([0.0, 4.998184, 1.511594, 0.374365], dtype=torch.float64), atol=2e-6, rtol=0)


def test_ect_gap_halves_every_stage_at_large_t():
    t = torch.tensor([60.0], dtype=torch.float64)  # σ(−60) ≈ 0: Δt/t = 2^−(stage+1)
    gaps = [(t - schedules.ect_r(t, s)).item() / 60 for s in range(5)]
    assert gaps == pytest.approx([0.5, 0.25, 0.125, 0.0625, 0.03125], rel=1e-9)


def test_ect_stages_follow_the_denoiser_phase():
    K, denoise, stages = 1000, 400, 4
    assert schedules.ect_stage(0, K, denoise, stages) is None and schedules.ect_stage(399, K, denoise, stages) is None
    assert [schedules.ect_stage(k, K, denoise, stages) for k in (400, 549, 550, 700, 850, 999, 1000)] == [0, 0, 1, 2, 3, 3, 3]


def test_edm_weight_and_lognormal_sigmas():
    torch.testing.assert_close(schedules.edm_weight(torch.tensor([0.5, 2.0])), torch.tensor([8.0, 4.25 / 1.0]))
    s = schedules.sample_lognormal_sigmas(200_000, -1.2, 1.2, torch.Generator().manual_seed(0)).log()
    assert s.mean().item() == pytest.approx(-1.2, abs=0.01) and s.std().item() == pytest.approx(1.2, abs=0.01)


def test_ect_recipe_pairs_per_phase():
    r, K, g = get_recipe("ect"), 1000, torch.Generator().manual_seed(0)
    first = r.pairs(0, K, 4096, g)
    assert first.denoise and first.schedule == {"stage": -1}
    assert (first.sigma == SIGMA_MIN).all() and (first.sigma_next >= SIGMA_MIN).all()
    torch.testing.assert_close(first.weight, schedules.edm_weight(first.sigma_next))
    assert first.sigma_next.log().mean().item() == pytest.approx(r.denoise_p_mean, abs=0.1)
    last = r.pairs(K - 1, K, 4096, g)
    assert not last.denoise and last.schedule == {"stage": r.stages - 1}
    assert (last.sigma >= SIGMA_MIN).all() and (last.sigma < last.sigma_next).all()
    torch.testing.assert_close(last.weight, 1 / (last.sigma_next - last.sigma))
    assert last.target_ema == 0.0 and r.distance == "pseudo_huber"


def test_grid_recipes_keep_their_pairs():
    ct, g = get_recipe("ct"), torch.Generator().manual_seed(0)
    p = ct.pairs(500, 1000, 512, g)
    grid = ct.sigmas(107)
    assert p.schedule == {"num_scales": 107} and not p.denoise
    i = torch.searchsorted(grid, p.sigma)
    torch.testing.assert_close(p.sigma_next, grid[i + 1])
    assert p.target_ema == pytest.approx(schedules.ct_target_ema(107))


def test_denoising_loss_is_the_weighted_l2_to_the_clean_image():
    class Zero(torch.nn.Module):
        def forward(self, x_in, c_noise, labels=None):
            return torch.zeros_like(x_in)

    f = ConsistencyFunction(Zero())
    x, z = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    sigma, w = torch.tensor([0.1, 0.5, 1.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = (w * l2(c_skip(sigma)[:, None, None, None] * (x + sigma[:, None, None, None] * z), x)).mean()
    torch.testing.assert_close(denoising_loss(f, x, sigma, z, w, l2), expected)


def test_ect_consistency_pairs_are_floored_at_the_boundary_and_not_capped_above():
    pairs = get_recipe("ect").pairs(999, 1000, 200_000, torch.Generator().manual_seed(1))
    t, r = pairs.sigma_next, pairs.sigma
    assert t.min() >= 2 * SIGMA_MIN  # so that Δt ≥ σ_min and 1/Δt ≤ 1/σ_min
    assert (t > 80.0).any()  # as the reference: lognormal t is not clamped to σ_max
    assert (r == SIGMA_MIN).any() and r.min() == SIGMA_MIN  # the reference's r = 0: the boundary f(x, σ_min) = x
