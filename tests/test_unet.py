"""The `unet` backbone: paper parameter counts, shapes, zero-init output, conditioning, gradients, errors."""

from __future__ import annotations

import pytest
import torch

import cmzoo
from cmzoo.errors import ConfigError

# Parameter counts of the reference ADM/CM U-Net at the paper's settings (DESIGN §4), unconditional.
PAPER_PARAMS = {32: 367.6e6, 64: 387.2e6, 128: 399.5e6}


def perturb_zero_init(model: torch.nn.Module, std: float = 0.05) -> None:
    """Give every all-zero parameter (output convs, attention projections, biases) random values."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=std)


def inputs(batch: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 3, resolution, resolution)
    c_noise = 250 * torch.log(torch.rand(batch) * 80 + 0.002)  # c_noise(σ) over the σ range (DESIGN §3)
    return x, c_noise


def test_registered_with_capabilities() -> None:
    spec = cmzoo.get_backbone("unet")
    assert not [p for p in cmzoo.plugin_problems() if "unet" in p]
    assert {"tiny", "paper"} <= set(spec.presets)
    assert spec.capabilities.class_conditional and spec.capabilities.zero_init_output


@pytest.mark.parametrize("resolution", sorted(PAPER_PARAMS))
def test_paper_param_count(resolution: int) -> None:
    with torch.device("meta"):
        model = cmzoo.create_backbone("unet", preset="paper", resolution=resolution)
    n = sum(p.numel() for p in model.parameters())
    assert n == pytest.approx(PAPER_PARAMS[resolution], rel=0.03)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_tiny_forward_shape_and_zero_output(resolution: int) -> None:
    torch.manual_seed(0)
    model = cmzoo.create_backbone("unet", preset="tiny", resolution=resolution)
    x, c_noise = inputs(2, resolution)
    with torch.no_grad():
        out = model(x, c_noise)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, torch.zeros_like(out))  # F_θ ≡ 0 before training, exactly


@pytest.mark.parametrize(
    "overrides",
    [{"use_scale_shift_norm": True}, {"resblock_updown": False}, {"dropout": 0.1}],
    ids=["scale_shift", "conv_resample", "dropout"],
)
def test_variants_forward(overrides: dict) -> None:
    torch.manual_seed(0)
    model = cmzoo.create_backbone("unet", preset="tiny", resolution=32, **overrides)
    x, c_noise = inputs(2, 32)
    out = model(x, c_noise)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))
    perturb_zero_init(model)
    assert model(x, c_noise).abs().sum() > 0


def test_class_conditional() -> None:
    torch.manual_seed(0)
    model = cmzoo.create_backbone("unet", preset="tiny", resolution=32, num_classes=10).eval()
    x, c_noise = inputs(2, 32)
    with torch.no_grad():
        assert torch.equal(model(x, c_noise, torch.tensor([1, 2])), torch.zeros_like(x))
        perturb_zero_init(model)
        a = model(x, c_noise, torch.tensor([1, 2]))
        b = model(x, c_noise, torch.tensor([3, 4]))
        unconditional = model(x, c_noise)
    assert a.shape == b.shape == unconditional.shape == x.shape
    assert not torch.allclose(a, b)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = cmzoo.create_backbone("unet", preset="tiny", resolution=32, num_classes=10)
    perturb_zero_init(model)
    x, c_noise = inputs(2, 32)
    model(x, c_noise, torch.tensor([0, 7])).square().mean().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead


@pytest.mark.parametrize(
    ("preset", "resolution", "overrides", "needle"),
    [
        ("paper", 36, {}, "resolution 36 is not divisible by 8"),
        ("paper", 120, {}, "resolution 120 is not divisible by 16"),  # 5 levels above 64 px
        ("tiny", 30, {}, "resolution 30 is not divisible by 4"),
        ("tiny", 32, {"num_head_channels": 48}, "num_head_channels 48"),
        ("tiny", 32, {"model_channels": 36}, "model_channels 36 is not a multiple of norm_groups 8"),
        ("tiny", 32, {"channel_mult": ()}, "'channel_mult'"),
        ("tiny", 32, {"bogus": 1}, "'bogus': unknown field"),
    ],
)
def test_config_errors(preset: str, resolution: int, overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match="unet") as err, torch.device("meta"):
        cmzoo.create_backbone("unet", preset=preset, resolution=resolution, **overrides)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)
