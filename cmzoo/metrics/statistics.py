"""Feature statistics of an image set, and the on-disk cache of a reference set's statistics.

A reference set (a data set at one resolution) is embedded once: its statistics are cached under
`$CMZOO_CACHE/refstats` (default `~/.cache/cmzoo/refstats`), keyed by a SHA-256 of the images' bytes
and shape and of everything that shapes the features (`FEATURES_VERSION`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cmzoo.metrics.inception import (
    FEATURES_VERSION,
    as_uint8_images,
    inception_features,
    torch_fidelity,
)

CACHE_ENV = "CMZOO_CACHE"


@dataclass(frozen=True)
class FeatureStatistics:
    """Pool features (for precision/recall and KID) and Gaussian statistics (for FID and sFID) of N images."""

    pool: torch.Tensor  # N x 2048 float32
    mu: np.ndarray  # 2048, float64
    sigma: np.ndarray  # 2048 x 2048
    mu_spatial: np.ndarray  # 2023
    sigma_spatial: np.ndarray  # 2023 x 2023

    @property
    def n(self) -> int:
        return len(self.pool)


def feature_statistics(pool: torch.Tensor, spatial: torch.Tensor) -> FeatureStatistics:
    """Means and covariances of pool and spatial features (torch-fidelity's estimator, in float64)."""
    to_statistics = torch_fidelity("metric_fid").fid_features_to_statistics
    stats, stats_spatial = to_statistics(pool.double()), to_statistics(spatial.double())
    return FeatureStatistics(pool.float(), stats["mu"], stats["sigma"], stats_spatial["mu"], stats_spatial["sigma"])


def images_statistics(
    images: torch.Tensor, batch_size: int = 64, device: str | torch.device = "auto", progress: bool = True,
    description: str = "Inception features",
) -> FeatureStatistics:
    """Embed uint8 or [-1, 1] float images with the offline Inception and summarise the features."""
    return feature_statistics(*inception_features(images, batch_size, device, progress, description))


def cache_dir() -> Path:
    """Where reference statistics are kept: $CMZOO_CACHE/refstats, default ~/.cache/cmzoo/refstats."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cmzoo"
    return Path(root) / "refstats"


def content_hash(images: torch.Tensor) -> str:
    """SHA-256 of uint8 images (bytes and shape) and of the feature definition."""
    h = hashlib.sha256(f"{FEATURES_VERSION}|{tuple(images.shape)}|".encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_cache_path(images: torch.Tensor, name: str) -> Path:
    """Cache file of a reference set: `<name>-<H>x<W>-n<M>-<hash>.npz`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "reference"
    h, w = images.shape[-2:]
    return cache_dir() / f"{slug}-{h}x{w}-n{len(images)}-{content_hash(images)[:16]}.npz"


def save_statistics(stats: FeatureStatistics, path: Path) -> None:
    """Write statistics atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, pool=stats.pool.numpy(), mu=stats.mu, sigma=stats.sigma, mu_spatial=stats.mu_spatial,
                     sigma_spatial=stats.sigma_spatial, features_version=np.array(FEATURES_VERSION))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_statistics(path: Path) -> FeatureStatistics | None:
    """Cached statistics, or None when the file is absent, unreadable or from another feature definition."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["features_version"]) != FEATURES_VERSION:
                return None
            return FeatureStatistics(
                torch.from_numpy(f["pool"]), f["mu"], f["sigma"], f["mu_spatial"], f["sigma_spatial"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def reference_statistics(
    images: torch.Tensor, name: str, batch_size: int = 64, device: str | torch.device = "auto",
    progress: bool = True,
) -> FeatureStatistics:
    """Statistics of a reference set, computed once per content and then read from the cache."""
    images = as_uint8_images(images, "reference")
    path = reference_cache_path(images, name)
    stats = load_statistics(path)
    if stats is None or stats.n != len(images):
        stats = images_statistics(images, batch_size, device, progress, f"Inception features: reference {name}")
        save_statistics(stats, path)
    return stats
