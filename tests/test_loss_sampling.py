"""The consistency loss and the samplers."""

import pytest
import torch

from cmzoo.engine.distances import l2
from cmzoo.engine.ema import frozen_copy
from cmzoo.engine.loss import consistency_loss
from cmzoo.engine.parameterization import SIGMA_MAX, SIGMA_MIN, ConsistencyFunction, c_out, c_skip
from cmzoo.engine.sampling import multistep_sample
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


def test_sigma_list_must_decrease():
    f = ConsistencyFunction(MeanNet(torch.zeros(1, 3, 4, 4)))
    with pytest.raises(ConfigError, match="strictly decreasing"):
        multistep_sample(f, torch.randn(1, 3, 4, 4), [1.0, 2.0])
