"""Reconstruction pre-training: supervision above the input's size, held-out PSNR, its errors."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cmzoo
from cmzoo.cli import main
from cmzoo.train.optim import lr_factor
from cmzoo.train.pretrain import random_pixels, reconstruct, reconstruction_loss


@pytest.fixture
def net():
    torch.manual_seed(0)
    return cmzoo.create_backbone("func", preset="tiny", resolution=16, dim=32, num_heads=2, patch_size=4)


@pytest.fixture
def npz64(tmp_path):
    """8 random 64-px RGB images."""
    path = tmp_path / "faces64.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8))
    return str(path)


def test_random_pixels_are_distinct_indices_of_the_grid():
    pixels = random_pixels(5, 6, 7, 20, torch.Generator().manual_seed(0))
    assert pixels.shape == (5, 20) and pixels.min() >= 0 and pixels.max() < 42
    assert all(len(set(row.tolist())) == 20 for row in pixels)
    assert not torch.equal(pixels[0], pixels[1])  # every image has its own subset


def test_render_pixels_equals_the_full_render_at_those_pixels(net):
    fn = reconstruct(net, torch.rand(3, 3, 16, 16) * 2 - 1)
    pixels = random_pixels(3, 40, 24, 50, torch.Generator().manual_seed(1))
    full = fn.render(40, 24).flatten(2)  # (B, C, 40·24)
    torch.testing.assert_close(fn.render_pixels(40, 24, pixels), full.gather(2, pixels[:, None].expand(-1, 3, -1)))


def test_above_size_loss_compares_the_function_with_the_target_at_its_own_grid(net):
    net.eval()  # no coordinate jitter: the loss is exact
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    truth_at_32 = F.mse_loss(reconstruct(net, x).render(32, 32), target)
    # 256 of the 1024 target pixels are sampled; the mean over many draws is the full-grid MSE.
    draws = torch.stack([reconstruction_loss(net, x, target) for _ in range(200)])
    assert abs(draws.mean().item() - truth_at_32.item()) < 0.02 * truth_at_32.item()
    # Targets at the input's size whose sample is every pixel: exactly the plain loss.
    torch.testing.assert_close(reconstruction_loss(net, x, x), reconstruction_loss(net, x))
    assert draws.std() > 0  # each draw is its own subset


def test_reconstruction_loss_without_coordinate_noise_is_the_pixel_centre_loss(net):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    net.eval()
    at_centres = reconstruction_loss(net, x)
    net.train()
    torch.testing.assert_close(reconstruction_loss(net, x, coords_noise=False), at_centres)
    jittered = torch.stack([reconstruction_loss(net, x) for _ in range(5)])
    assert jittered.std() > 0 and not torch.allclose(jittered, at_centres)  # the default jitters in training


def test_lr_factor_is_constant_then_falls_linearly_to_zero():
    assert [lr_factor(s, 10, 0.3) for s in range(11)] == pytest.approx([1] * 8 + [2 / 3, 1 / 3, 0])
    assert [lr_factor(s, 4, 1.0) for s in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])
    assert {lr_factor(s, 10, 0.0) for s in range(11)} == {1.0}


def test_lr_warmup_rises_linearly_over_at_most_a_tenth_of_the_run():
    assert [lr_factor(s, 1000, warmup=4) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])
    assert [lr_factor(s, 30, warmup=100) for s in range(4)] == pytest.approx([1 / 3, 2 / 3, 1, 1])  # 3 = 30/10
    assert lr_factor(9, 10, decay=0.5, warmup=0) == pytest.approx(0.2)


def test_pretrain_logs_the_decayed_learning_rate(tmp_path, npz64):
    out = tmp_path / "pre"
    args = ["pretrain", "--backbone", "func", "--data", npz64, "--holdout", "2", "--steps", "4", "--lr", "0.01",
            "--lr-decay", "0.5", "--sample-every", "1", "--batch-size", "3", "--out", str(out)]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["lr"] for r in records] == pytest.approx([0.01, 0.01, 0.01, 0.005])  # the last 2 steps: 1, then ½
    assert json.loads((out / "config.json").read_text())["lr_decay"] == 0.5


def test_pretrain_logs_held_out_psnr_at_both_sizes(tmp_path, npz64):
    out = tmp_path / "pre"
    args = ["pretrain", "--backbone", "func", "--data", npz64, "--render-resolution", "64", "--holdout", "2",
            "--steps", "4", "--sample-every", "2", "--batch-size", "3", "--out", str(out)]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if "held_out_psnr" in r]
    assert [r["step"] for r in scored] == [2, 4]
    assert all(5 < r["held_out_psnr"] < 40 and 5 < r["held_out_psnr_64"] < 40 for r in scored)
    assert json.loads((out / "config.json").read_text())["render_resolution"] == 64


def test_greyscale_pretraining_builds_a_one_channel_network_that_training_starts_from(tmp_path):
    from cmzoo.checkpoint import load_checkpoint
    from cmzoo.rundir import RunDir
    from cmzoo.run import load_run

    data = tmp_path / "grey.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (8, 16, 16), dtype=np.uint8))
    pre, run = tmp_path / "pre", tmp_path / "run"
    assert main(["pretrain", "--backbone", "func", "--data", str(data), "--resolution", "16", "--holdout", "2",
                 "--steps", "2", "--batch-size", "3", "--out", str(pre)]) == 0
    assert load_checkpoint(RunDir(pre).latest_checkpoint())["channels"] == 1
    assert load_run(pre, weights="online").channels == 1
    assert main(["train", "--backbone", "func", "--data", str(data), "--resolution", "16", "--init-from", str(pre),
                 "--steps", "1", "--batch-size", "2", "--sample-every", "0", "--out", str(run)]) == 0
    assert load_run(run).channels == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--render-resolution", "128"], "holds 64-px images; render_resolution 128 needs images of at least 128 px"),
        (["--render-resolution", "16"], "render_resolution 16 is below the input resolution 32"),
        (["--holdout", "8"], "holdout 8 leaves no training images out of 8; hold out fewer"),
        (["--lr-decay", "1.5"], "lr_decay"),
    ],
)
def test_pretrain_errors_are_one_line(tmp_path, npz64, capsys, extra, message):
    args = ["pretrain", "--backbone", "func", "--data", npz64, "--steps", "1", "--out", str(tmp_path / "p"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
