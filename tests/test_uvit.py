"""The `uvit` backbone: paper parameter counts, the forward contract, conditioning, gradients, errors."""

from __future__ import annotations

import copy

import pytest
import torch

import cmzoo
from cmzoo.errors import ConfigError

# Reference counts (DESIGN §4): baofff/U-ViT built unconditional at the paper's settings.
PAPER_PARAMS = {32: 114.7e6, 64: 114.8e6, 128: 115.0e6}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(resolution: int = 32, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return cmzoo.create_backbone("uvit", preset="tiny", resolution=resolution, **kwargs)


def test_registered_without_problems():
    spec = cmzoo.get_backbone("uvit")
    assert {"tiny", "paper"} <= set(spec.presets)
    assert spec.capabilities.class_conditional
    assert not spec.capabilities.zero_init_output  # the reference is not zero-init
    assert not [p for p in cmzoo.plugin_problems() if "uvit" in p]


@pytest.mark.parametrize("resolution", sorted(PAPER_PARAMS))
def test_paper_param_count(resolution):
    with torch.device("meta"):
        model = cmzoo.create_backbone("uvit", preset="paper", resolution=resolution)
    assert n_params(model) == pytest.approx(PAPER_PARAMS[resolution], rel=0.03)


def test_tiny_is_small():
    assert 2e5 <= n_params(tiny()) <= 2e6


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_forward_shape(resolution):
    model = tiny(resolution)
    x = torch.randn(2, 3, resolution, resolution)
    out = model(x, torch.randn(2) * 500)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_noise_level_changes_output():
    model = tiny()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x, torch.full((2,), -500.0)), model(x, torch.full((2,), 500.0)))


def test_class_conditional():
    model = tiny(num_classes=10)
    x = torch.randn(2, 3, 32, 32).repeat(2, 1, 1, 1)
    c = torch.full((4,), 100.0)
    with torch.no_grad():
        out = model(x, c, torch.tensor([0, 1, 2, 3]))
        assert out.shape == x.shape
        assert not torch.allclose(out[:2], out[2:])  # same inputs, different labels
        assert model(x, c).shape == x.shape  # no labels: the label token is left out


def test_gradients_reach_every_parameter():
    model = tiny(num_classes=10)
    out = model(torch.randn(2, 3, 32, 32), torch.randn(2) * 500, torch.tensor([3, 7]))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_loads_weights_saved_under_the_earlier_key_names():
    # Earlier versions named the patch and label embeddings patch_embed / label_emb.
    saved = tiny(num_classes=10).state_dict()
    renamed = {
        k.replace("x_embedder.", "patch_embed.").replace("y_embedder.", "label_emb."): v for k, v in saved.items()
    }
    assert renamed.keys() != saved.keys()
    torch.manual_seed(1)
    model = cmzoo.create_backbone("uvit", preset="tiny", resolution=32, num_classes=10)
    wrapped = torch.nn.ModuleDict({"net": copy.deepcopy(model)})  # as a checkpoint of a wrapper holds it
    model.load_state_dict(renamed)
    wrapped.load_state_dict({f"net.{k}": v for k, v in renamed.items()})
    for loaded in (model, wrapped["net"]):
        assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"resolution": 30}, "not divisible by patch_size 4"),
        ({"resolution": 64, "patch_size": 6}, "not divisible by patch_size 6"),
        ({"bogus": 1}, "'bogus': unknown field"),
        ({"depth": 4}, "'depth'"),
        ({"dim": 130}, "not divisible by num_heads"),
    ],
)
def test_config_errors(overrides, expected):
    kwargs = {"resolution": 32, **overrides}
    with pytest.raises(ConfigError, match=expected):
        cmzoo.create_backbone("uvit", preset="tiny", **kwargs)
