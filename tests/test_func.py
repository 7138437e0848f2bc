"""The `func` backbone (DESIGN §5): render rule, grouping, parameter counts, persistence, pre-training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import cmzoo
from cmzoo.errors import BackboneError, CheckpointError, ConfigError
from cmzoo.layers import AdaLNZeroBlock
from cmzoo.train.pretrain import pretrain_steps, psnr, reconstruct, reconstruction_loss

from cmzoo_func import FuncConfig
from cmzoo_func.image_function import (
    INRImageFunction,
    fourier_features,
    pixel_centres,
    variational_coordinates,
)
from cmzoo_func.model import GroupedWeights


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(preset: str = "tiny", resolution: int = 16, num_classes: int | None = None, **overrides):
    return cmzoo.create_backbone("func", preset, resolution=resolution, num_classes=num_classes, **overrides)


@pytest.fixture(scope="module")
def tiny():
    """A tiny func at 16 px (patch 4) and the functions it predicts for 3 noisy inputs."""
    torch.manual_seed(0)
    net = build().eval()
    x_in, c_noise = torch.randn(3, 3, 16, 16), torch.randn(3) * 100
    with torch.no_grad():
        fn = net.predict_function(x_in, c_noise)
    return net, x_in, c_noise, fn


# --- the render rule ---------------------------------------------------------------------------------


def test_pixel_centres_closed_form():
    assert torch.equal(pixel_centres(2, 2), torch.tensor([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]))
    c = pixel_centres(3, 5)  # row-major (y, x): y_i = −1 + (2i+1)/H, x_j = −1 + (2j+1)/W
    assert c.shape == (15, 2)
    assert torch.allclose(c[:, 0], torch.tensor([-2 / 3, 0, 2 / 3]).repeat_interleave(5))
    assert torch.allclose(c[:, 1], torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8]).repeat(3))


def test_fourier_features_closed_form():
    c = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    f = fourier_features(c, n_freqs=3, max_freq=4.0)  # frequencies 1, 2, 4 per axis
    angles = math.pi * torch.tensor([0.25, 0.5, 1.0, -0.5, -1.0, -2.0], dtype=torch.float64)
    assert f.shape == (1, 12)
    assert torch.allclose(f[0], torch.cat([angles.cos(), angles.sin()]))


def test_linear_inr_reproduces_the_pixel_centres():
    # With frequencies {1, ε}, sin(π ε c)/(π ε) = c + O(ε²): an INR linear in that feature (split
    # over two ReLU units) renders channel 0 = y and channel 1 = x of every pixel centre.
    eps = 1e-5
    features = 8  # [cos πy, cos πεy, cos πx, cos πεx, sin πy, sin πεy, sin πx, sin πεx]
    w0 = torch.zeros(features + 1, 4, dtype=torch.float64)
    for unit, (row, sign) in enumerate([(5, 1), (5, -1), (7, 1), (7, -1)]):
        w0[row, unit] = sign / (math.pi * eps)
    w1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    fn = INRImageFunction([w0[None], w1[None]], n_freqs=2, max_freq=eps)
    img = fn.render(3, 5)
    expected = pixel_centres(3, 5, dtype=torch.float64).T.reshape(2, 3, 5)
    assert img.shape == (1, 2, 3, 5) and img.dtype == torch.float64
    assert torch.allclose(img[0], expected, atol=1e-8)
    assert torch.equal(fn.render(2, 2)[0, 1].sign(), torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))


@pytest.mark.parametrize("size", [(16, 16), (32, 32), (17, 9), (96, 48), (1, 1)])
def test_render_any_size(tiny, size):
    _, _, _, fn = tiny
    img = fn.render(*size)
    assert img.shape == (3, 3, *size) and img.dtype == torch.float32
    assert torch.isfinite(img).all()


def test_render_dtype_follows_weights(tiny):
    assert tiny[3].to(dtype=torch.float64).render(8, 8).dtype == torch.float64


def test_chunked_render_equals_unchunked(tiny):
    fn = tiny[3]
    whole = fn.render(24, 20)
    for chunk in (7, 64, 480, 10_000):
        assert torch.allclose(fn.render(24, 20, chunk=chunk), whole, atol=1e-6)


def test_variational_coordinates_stay_within_a_quarter_pixel():
    height, width = 8, 32
    clean = pixel_centres(height, width).expand(500, -1, -1)
    noisy = variational_coordinates(clean, height, width, torch.Generator().manual_seed(0))
    offset = (noisy - clean) * torch.tensor([height, width]) / 2  # in pixels of each axis
    assert offset.abs().max() <= 0.25 + 1e-6
    assert offset.abs().max() > 0.24  # the clip is reached
    assert 0.12 < offset.std() < 0.15  # 0.15 px before clipping


def test_training_forward_uses_variational_coordinates_reproducibly(tiny):
    net, x_in, c_noise, _ = tiny
    net.train()
    try:
        with torch.no_grad():
            torch.manual_seed(1)
            a = net(x_in, c_noise)
            torch.manual_seed(1)
            b = net(x_in, c_noise)
            net.eval()
            clean = net(x_in, c_noise)
    finally:
        net.eval()
    assert torch.equal(a, b)  # noise from the global RNG: fork_rng gives online and target the same
    assert not torch.equal(a, clean)


# --- the generator -----------------------------------------------------------------------------------


def test_forward_is_the_render_of_the_predicted_function(tiny):
    net, x_in, c_noise, _ = tiny
    with torch.no_grad():
        out = net(x_in, c_noise)
        fn = net.predict_function(x_in, c_noise)
    assert out.shape == x_in.shape
    assert torch.equal(out, fn.render(16, 16))


def test_grouping_gives_unit_columns_and_the_base_bias(tiny):
    net, _, _, fn = tiny
    assert net.to_weights.num_tokens == 16 * 3 + 3  # tiny: INR 4 × 64, 16 groups
    for wb, base in zip(fn.weights, net.to_weights.base):
        norms = wb[:, :-1].norm(dim=1)  # over the input dimension
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
        assert torch.equal(wb[:, -1], base[-1].detach().expand(len(fn), -1))  # bias not generated


def test_column_j_is_scaled_by_token_j_mod_g():
    torch.manual_seed(0)
    grouped = GroupedWeights(dim=8, shapes=[(4, 5), (6, 3)], n_groups=2)  # 5 and 3 columns from 2 tokens each
    grouped.reset_base()
    tokens = torch.randn(2, 4, 8)  # distinct token vectors
    with torch.no_grad():
        weights = grouped(tokens)
        for t, (w, base, postfc) in enumerate(zip(weights, grouped.base, grouped.postfc)):
            for j in range(base.shape[1]):
                column = F.normalize(base[:-1, j] * postfc(tokens[:, 2 * t + j % 2]), dim=1)
                torch.testing.assert_close(w[:, :-1, j], column)


def test_paper_token_and_weight_counts():
    with torch.device("meta"):
        net = build("paper", resolution=32)
    assert net.inr_tokens.shape[1] == net.to_weights.num_tokens == 259  # 64·4 + 3
    shapes = [tuple(w.shape) for w in net.to_weights.base]
    assert shapes == [(257, 256)] * 4 + [(257, 3)]
    assert sum(math.prod(s) for s in shapes) == 263_939


def test_paper_parameter_count_is_resolution_independent():
    counts, core = {}, {}
    with torch.device("meta"):
        for resolution in (32, 64, 128):
            net = build("paper", resolution=resolution)
            counts[resolution] = n_params(net)
            core[resolution] = counts[resolution] - net.pos_embed.numel() - n_params(net.x_embedder)
            assert net.x_embedder.patch_size == ((4, 4) if resolution <= 64 else (8, 8))
    assert abs(counts[32] / 144e6 - 1) < 0.03, counts
    assert core[32] == core[64] == core[128]


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = build(num_classes=5).train()
    # adaLN-Zero gates close every encoder branch at init (DiT); open them as training would.
    for block in net.encoder:
        assert isinstance(block, AdaLNZeroBlock)
        torch.nn.init.normal_(block.adaLN_modulation[-1].weight, std=0.02)
    out = net(torch.randn(4, 3, 16, 16), torch.randn(4), torch.tensor([0, 1, 2, 3]))
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_labels_condition_the_function():
    torch.manual_seed(0)
    net = build(num_classes=3).eval()
    x_in, c_noise = torch.randn(1, 3, 16, 16), torch.zeros(1)
    with torch.no_grad():
        assert not torch.equal(net(x_in, c_noise, torch.tensor([0])), net(x_in, c_noise, torch.tensor([1])))


def test_wrong_input_size_names_the_fix(tiny):
    with pytest.raises(BackboneError, match="render the predicted function"):
        tiny[0].predict_function(torch.randn(1, 3, 32, 32), torch.zeros(1))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"dim": 100, "num_heads": 3}, "num_heads"), ({"n_groups": 0}, "n_groups"), ({"bogus": 1}, "bogus")],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        cmzoo.get_backbone("func").make_config("tiny", **overrides)


def test_spec_declares_the_function_contract():
    spec = cmzoo.get_backbone("func")
    caps = spec.capabilities
    assert caps.any_resolution and caps.class_conditional and caps.function_output and caps.pretrain
    assert not caps.zero_init_output  # unit-norm INR columns: the untrained output is not 0
    assert spec.function_type is INRImageFunction and spec.config_model is FuncConfig
    assert {"tiny", "paper"} <= set(spec.presets)


# --- the image-function object -----------------------------------------------------------------------


def test_save_load_render_is_bit_identical(tiny, tmp_path):
    fn = tiny[3]
    fn.save(tmp_path / "fn.safetensors")
    loaded = cmzoo.get_backbone("func").function_type.load(tmp_path / "fn.safetensors")
    assert isinstance(loaded, cmzoo.ImageFunction)
    assert (loaded.n_freqs, loaded.max_freq, len(loaded)) == (fn.n_freqs, fn.max_freq, len(fn))
    assert torch.equal(loaded.render(17, 9), fn.render(17, 9))


@pytest.mark.parametrize("content", [None, b"not a safetensors file"])
def test_load_errors_name_the_file(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        INRImageFunction.load(path)


def test_batch_indexing_and_device(tiny):
    fn = tiny[3]
    assert len(fn) == 3 and len(fn[1:]) == 2 and len(fn[-1]) == 1
    assert torch.allclose(fn[1].render(8, 8), fn.render(8, 8)[1:2], atol=1e-6)
    assert fn.to("cpu").device.type == "cpu"
    assert not any(w.requires_grad for w in fn.detach().weights)


# --- reconstruction pre-training ---------------------------------------------------------------------


def test_psnr_closed_form():
    a = torch.zeros(2, 3, 4, 4)
    assert torch.allclose(psnr(a, a + 0.1), torch.full((2,), 10 * math.log10(4 / 0.01)))


def test_reconstruction_skips_feature_extraction():
    torch.manual_seed(0)
    net = build().train()
    reconstruction_loss(net, torch.rand(2, 3, 16, 16) * 2 - 1).backward()
    unused = {n.split(".")[0] for n, p in net.named_parameters() if p.grad is None}
    assert unused == {"encoder", "t_embedder"}


def coloured_shapes(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n images in [-1, 1]: a coloured disc and square on a coloured background."""
    g = torch.Generator().manual_seed(seed)
    y, x = pixel_centres(size, size).T.reshape(2, size, size)
    images = []
    for _ in range(n):
        background, disc_colour, square_colour = torch.rand(3, 3, 1, 1, generator=g) * 2 - 1
        cy, cx, sy, sx = torch.rand(4, generator=g) - 0.5
        radius = 0.25 + 0.3 * torch.rand((), generator=g)
        disc = ((y - cy) ** 2 + (x - cx) ** 2 < radius**2).float()
        square = (((y - sy).abs() < 0.3) & ((x - sx).abs() < 0.3)).float()
        image = background * (1 - disc) + disc_colour * disc
        images.append(image * (1 - square) + square_colour * square)
    return torch.stack(images)


@pytest.mark.slow
def test_reconstruction_pretraining_learns():
    torch.manual_seed(0)
    images = coloured_shapes(8, 32)
    net = build(resolution=32)

    def score() -> float:
        net.eval()
        with torch.no_grad():
            return psnr(reconstruct(net, images).render(32, 32), images).mean().item()

    before = score()
    losses = pretrain_steps(net, images, steps=200, batch_size=8, generator=torch.Generator().manual_seed(0))
    after = score()
    assert after > before + 8, (before, after)  # measured +13…+15 dB over 3 seeds
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])
