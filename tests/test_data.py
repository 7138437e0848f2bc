"""Data formats, the procedural shapes set and the deterministic batch order."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cmzoo.data import batch_indices, load_dataset, render_shapes
from cmzoo.errors import DataError


def test_shapes_are_deterministic_and_in_range():
    a, b = render_shapes(5, 32, 32), render_shapes(5, 32, 32)
    assert torch.equal(a, b) and a.shape == (3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(render_shapes(5, 32, 32), render_shapes(6, 32, 32))


def test_shapes_are_consistent_across_resolutions():
    # Box-downsampling the 128-px render must give the 32-px render up to anti-aliasing error.
    hi, lo = render_shapes(3, 128, 128), render_shapes(3, 32, 32)
    down = torch.nn.functional.avg_pool2d(hi[None], 4)[0]
    assert (down - lo).abs().mean() < 0.02
    assert render_shapes(3, 48, 96).shape == (3, 48, 96)


def test_batch_order_is_a_permutation_per_epoch():
    n, b = 10, 4
    seen = torch.cat([batch_indices(k, b, n, seed=1) for k in range(5)])  # 20 = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert torch.equal(batch_indices(3, b, n, 1), batch_indices(3, b, n, 1))


def test_npz_with_labels(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (6, 40, 50, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs, labels=np.arange(6) % 3)
    d = load_dataset(tmp_path / "d.npz", 16)
    assert d.images.shape == (6, 3, 16, 16) and d.num_classes == 3
    x, y = d.batch(torch.tensor([0, 1]))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 and y.tolist() == [0, 1]


def test_image_folder_recursive(tmp_path):
    (tmp_path / "a").mkdir()
    for i, sub in enumerate(["", "a/"]):
        Image.new("RGB", (20, 30), (i * 200, 10, 10)).save(tmp_path / f"{sub}img{i}.png")
    d = load_dataset(tmp_path, 8)
    assert d.images.shape == (2, 3, 8, 8)


def test_cifar_batches_folder(tmp_path):
    batch = {b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    d = load_dataset(tmp_path, 32)
    assert d.images.shape == (4, 3, 32, 32) and d.labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "is not a .npz"),
        (lambda p: (p / "bad.png").write_bytes(b"not a png") and p, "cannot read image"),
        (lambda p: np.savez(p / "n.npz", pics=np.zeros(3)) or p / "n.npz", "has no array 'images'"),
        (lambda p: np.savez(p / "n.npz", images=np.zeros((2, 8, 8, 2), np.uint8)) or p / "n.npz", "must be \\(N, H, W, 3\\) or greyscale \\(N, H, W\\[, 1\\]\\) uint8, got \\(2, 8, 8, 2\\)"),
        (lambda p: p, "no images"),
    ],
)
def test_bad_data_gives_a_clear_error(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        load_dataset(make(tmp_path), 16)


def test_real_celeba(shared_data):
    d = load_dataset(shared_data / "celeba_64.npz", 32)
    assert d.images.shape == (7800, 3, 32, 32) and d.labels is None
