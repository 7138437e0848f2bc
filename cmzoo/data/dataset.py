"""In-memory image data set and the deterministic batch order (a pure function of the step)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass
class ImageDataset:
    """Images as uint8 (N, C, H, W) with optional int64 labels (N,); `images` may be a view of a
    memory-mapped file, so read them through `uint8` or `batch`."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int | None:
        return int(self.labels.max()) + 1 if self.labels is not None else None

    def uint8(self, indices: torch.Tensor) -> torch.Tensor:
        """The uint8 images at `indices`, contiguous (N, C, H, W) whatever the layout of `images` (a
        memory-mapped file holds them as (N, H, W, C))."""
        return self.images[indices].contiguous()

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images scaled to [-1, 1] (float32) and labels for `indices`."""
        return from_uint8(self.uint8(indices)), (self.labels[indices] if self.labels is not None else None)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] → float32 in [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] → uint8 [0, 255] (rounded, as a saved PNG holds them)."""
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=4)
def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the n examples in `epoch`, fixed by (seed, epoch); cached, since every step of the
    epoch reads it (do not modify the tensor)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> torch.Tensor:
    """Example indices of the global batch at `step`: consecutive slices of per-epoch permutations."""
    start = step * batch_size
    out, filled = [], 0
    while filled < batch_size:
        epoch, offset = divmod(start + filled, n)
        take = min(batch_size - filled, n - offset)
        out.append(epoch_permutation(n, seed, epoch)[offset : offset + take])
        filled += take
    return torch.cat(out)
