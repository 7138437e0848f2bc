"""Learning tests: a tiny backbone, trained briefly on a handful of fixed `shapes` images, must learn.

The recipe is ct-short (one loss scale throughout). Measures: mean loss of the last 20 steps vs the
first 20, and den1 — the error of one-step denoising of the training images from σ = 1. NN-MSE of
one-step samples is asserted only for func with Fourier frequencies up to the grid's Nyquist (16 at
32 px); for zero-init backbones it starts at the hard-to-beat grey image, and with the tiny preset's
frequencies up to 1024 the untrained samples already score low (NN-MSE 0.061, and 0.081 after 400
steps here, while loss and den1 fall as asserted).
"""

import pytest
import torch

from cmzoo.config import make_config
from cmzoo.data import ImageDataset, load_dataset
from cmzoo.engine.sampling import multistep_sample
from cmzoo.metrics.denoising import denoising_distance, nearest_neighbour_mse
from cmzoo.train.trainer import Trainer


def _learn(backbone: str, tmp_path, steps: int = 300, images: int = 16, lr: float = 1e-3, sample_ema: float = 0.95,
           **backbone_overrides):
    torch.set_num_threads(2)
    data = load_dataset("shapes", 32, shapes_count=images)
    data = ImageDataset(data.images, name="shapes16")
    cfg = make_config(backbone=backbone, recipe="ct-short", steps=steps, batch_size=16, lr=lr, out=str(tmp_path),
                      shapes_count=images, sample_every=0, checkpoint_every=0, sample_ema=sample_ema,
                      backbone_overrides=backbone_overrides)
    trainer = Trainer(cfg, data=data)
    x0, _ = data.batch(torch.arange(images))
    noise = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def measures():
        den1 = denoising_distance(trainer.ema, x0, 1.0, torch.Generator().manual_seed(2))
        with torch.no_grad():
            nn_mse = nearest_neighbour_mse(multistep_sample(trainer.ema, noise).clamp(-1, 1), x0)
        return den1, nn_mse

    den1_0, nn_0 = measures()
    losses = [trainer.train_step()["loss"] for _ in range(steps)]
    den1_1, nn_1 = measures()
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    return first, last, den1_0, den1_1, nn_0, nn_1


@pytest.mark.slow
@pytest.mark.parametrize("backbone, steps", [("dit", 400), ("uvit", 300), ("unet", 200)])
def test_tiny_backbone_learns(tmp_path, backbone, steps):
    first, last, den1_0, den1_1, nn_0, nn_1 = _learn(backbone, tmp_path, steps=steps)
    assert last <= 0.7 * first, (first, last)
    assert den1_1 <= 0.75 * den1_0, (den1_0, den1_1)


@pytest.mark.slow
@pytest.mark.parametrize("frequencies", [{}, {"n_freqs": 16, "max_freq": 16.0}], ids=["tiny", "nyquist"])
def test_tiny_func_learns_and_its_samples_approach_the_training_images(tmp_path, frequencies):
    first, last, den1_0, den1_1, nn_0, nn_1 = _learn("func", tmp_path, steps=400, **frequencies)
    assert last <= 0.65 * first, (first, last)
    assert den1_1 <= 0.75 * den1_0, (den1_0, den1_1)
    if frequencies:
        assert nn_1 <= 0.95 * nn_0, (nn_0, nn_1)
