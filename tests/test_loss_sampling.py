"""The consistency loss and the samplers."""

import pytest
import torch

import cmzoo
from cmzoo.engine.distances import l2
from cmzoo.engine.ema import frozen_copy
from cmzoo.engine.loss import consistency_loss
from cmzoo.engine.parameterization import SIGMA_MAX, SIGMA_MIN, ConsistencyFunction, c_noise, c_out, c_skip
from cmzoo.engine.sampling import multistep_sample, sample_at_sizes
from cmzoo.errors import ConfigError


class DropoutNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x_in, c_noise, labels=None):
        return self.drop(self.scale * x_in)


def test_online_and_target_share_the_dropout_mask():
    online = ConsistencyFunction(DropoutNet()).train()
    target = frozen_copy(online)
    x, z = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)
    sigma = torch.full((8,), 1.0)
    loss = consistency_loss(online, target, x, sigma, sigma, z, torch.ones(8), l2)
    assert loss.item() == 0.0  # identical inputs, weights and mask
    # ...while two forwards without the shared state draw different masks
    assert not torch.equal(online(x, sigma), online(x, sigma))


def test_loss_is_the_weighted_mean_of_distances():
    class Zero(torch.nn.Module):
        def forward(self, x_in, c_noise, labels=None):
            return torch.zeros_like(x_in)

    f = ConsistencyFunction(Zero())
    x, z = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    s, sn = torch.full((4,), 0.5), torch.full((4,), 0.8)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    loss = consistency_loss(f, f, x, s, sn, z, w, l2)
    expected = (w * l2(c_skip(sn)[:, None, None, None] * (x + 0.8 * z), c_skip(s)[:, None, None, None] * (x + 0.5 * z))).mean()
    torch.testing.assert_close(loss, expected)


class AffineNet(torch.nn.Module):
    """F = a·x_in + b, logging (c_noise, grad enabled) of every call."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Parameter(torch.tensor(a)), torch.nn.Parameter(torch.tensor(b))
        self.calls = []

    def forward(self, x_in, c_noise, labels=None):
        self.calls.append((c_noise.clone(), torch.is_grad_enabled()))
        return self.a * x_in + self.b


def test_online_is_at_sigma_next_with_gradients_and_target_at_sigma_without():
    online, target = ConsistencyFunction(AffineNet(1.0, 0.2)), ConsistencyFunction(AffineNet(-0.5, 0.7))
    x, z = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    s, sn = torch.full((4,), 0.5), torch.full((4,), 0.8)

    def asymmetric(a, b):  # d(online, target)
        return (a - 2 * b).flatten(1).mean(1)

    loss = consistency_loss(online, target, x, s, sn, z, torch.ones(4), asymmetric)
    loss.backward()
    [(noise_online, grad_online)], [(noise_target, grad_target)] = online.net.calls, target.net.calls
    assert torch.equal(noise_online, c_noise(sn)) and grad_online
    assert torch.equal(noise_target, c_noise(s)) and not grad_target
    assert online.net.a.grad is not None and target.net.a.grad is None
    with torch.no_grad():
        expected = asymmetric(online(x + 0.8 * z, sn), target(x + 0.5 * z, s)).mean()
    torch.testing.assert_close(loss.detach(), expected)


class MeanNet(torch.nn.Module):
    """F ≡ a fixed image m/c_out, so f(x, σ) ≈ c_skip x + m."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = image

    def forward(self, x_in, c_noise, labels=None):
        return self.image.expand_as(x_in)


def test_one_step_sample_is_f_at_sigma_max():
    m = torch.rand(1, 3, 8, 8)
    f = ConsistencyFunction(MeanNet(m))
    z = torch.randn(2, 3, 8, 8)
    expected = c_skip(torch.tensor(SIGMA_MAX)) * SIGMA_MAX * z + c_out(torch.tensor(SIGMA_MAX)) * m
    torch.testing.assert_close(multistep_sample(f, z), expected)


def test_multistep_sample_follows_the_algorithm():
    m = torch.rand(1, 3, 8, 8)
    f = ConsistencyFunction(MeanNet(m))
    z = torch.randn(2, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = multistep_sample(f, z, [SIGMA_MAX, 2.0], generator=g1)
    x = f(SIGMA_MAX * z, torch.full((2,), SIGMA_MAX))
    x = x + (2.0**2 - SIGMA_MIN**2) ** 0.5 * torch.randn(x.shape, generator=g2)
    torch.testing.assert_close(out, f(x, torch.full((2,), 2.0)))


def test_multistep_clamps_each_intermediate_image_and_one_step_is_not_clamped():
    f = ConsistencyFunction(MeanNet(torch.full((1, 3, 8, 8), 10.0)))  # f(x, σ) = c_skip x + 10 c_out: far above 1
    z = torch.randn(2, 3, 8, 8)
    one = multistep_sample(f, z)
    torch.testing.assert_close(one, c_skip(torch.tensor(SIGMA_MAX)) * SIGMA_MAX * z + 10 * c_out(torch.tensor(SIGMA_MAX)))
    assert one.min() > 4.9
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = multistep_sample(f, z, [SIGMA_MAX, 10.0, 2.0], generator=g1)
    x = one
    for tau in (10.0, 2.0):
        x = f(x.clamp(-1, 1) + (tau**2 - SIGMA_MIN**2) ** 0.5 * torch.randn(x.shape, generator=g2), torch.full((2,), tau))
    torch.testing.assert_close(out, x)


@pytest.mark.parametrize("sigmas", [[SIGMA_MAX], [SIGMA_MAX, 2.0], [SIGMA_MAX, 10.0, 2.0]])
def test_sample_at_sizes_is_multistep_sample_at_the_training_size(sigmas, one_thread):
    torch.manual_seed(0)
    f = ConsistencyFunction(cmzoo.create_backbone("func", "tiny", resolution=16)).eval()
    z = 400 * torch.randn(2, 3, 16, 16)  # c_skip(σ_max)·σ_max·z ≈ 1.25 z: the clamp before re-noising matters
    with torch.no_grad():
        expected = multistep_sample(f, z, sigmas, generator=torch.Generator().manual_seed(1))
        images, _ = sample_at_sizes(f, z, sigmas, generator=torch.Generator().manual_seed(1), sizes=[(16, 16)])
    torch.testing.assert_close(images[(16, 16)], expected)


def test_sigma_list_must_decrease():
    f = ConsistencyFunction(MeanNet(torch.zeros(1, 3, 4, 4)))
    with pytest.raises(ConfigError, match="strictly decreasing"):
        multistep_sample(f, torch.randn(1, 3, 4, 4), [1.0, 2.0])


@pytest.mark.parametrize("sigmas, message", [
    ([SIGMA_MAX, 0.001], "σ_min, σ_max"),  # √(τ² − σ_min²) would be complex
    ([100.0, 1.0], "σ_min, σ_max"),
    ([SIGMA_MAX, -1.0], "σ_min, σ_max"),
    ([float("nan")], "finite"),
    ([float("inf"), 1.0], "finite"),
    ([], "non-empty"),
])
def test_sigma_list_must_be_finite_and_within_the_trained_range(sigmas, message):
    f = ConsistencyFunction(MeanNet(torch.zeros(1, 3, 4, 4)))
    with pytest.raises(ConfigError, match=message):
        multistep_sample(f, torch.randn(1, 3, 4, 4), sigmas)


def test_sigma_list_may_reach_both_ends_of_the_range():
    f = ConsistencyFunction(MeanNet(torch.zeros(1, 3, 4, 4)))
    assert torch.isfinite(multistep_sample(f, torch.randn(1, 3, 4, 4), [SIGMA_MAX, 1.0, SIGMA_MIN])).all()
