"""Readers for the supported data formats, all resized to a square training resolution.

`shapes` (procedural, the default), an image folder (png/jpg/jpeg/webp, recursive), an `.npz` with
`images` (N, H, W, 3) uint8 and optional `labels`, and a CIFAR-10 python batches folder.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cmzoo.data.dataset import ImageDataset, to_uint8
from cmzoo.data.shapes import render_shapes
from cmzoo.errors import DataError
from cmzoo.progress import progress_bar
from cmzoo.safe_pickle import load_numpy_pickle

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def load_dataset(source: str | Path | None, resolution: int, shapes_count: int = 2048, seed: int = 0) -> ImageDataset:
    """The data set at `source` (None or 'shapes': the procedural set) at `resolution` px."""
    if source is None or str(source) == "shapes":
        return shapes_dataset(shapes_count, resolution, seed)
    path = Path(source)
    if not path.exists():
        raise DataError(f"data path {path} does not exist; give an image folder, a .npz file or a CIFAR-10 folder")
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(f"data file {path} is not a .npz; give an image folder, a .npz file or a CIFAR-10 folder")
        data = npz_dataset(path, resolution)
    elif any((path / b).is_file() for b in CIFAR_BATCHES):
        data = cifar_dataset(path, resolution)
    else:
        data = folder_dataset(path, resolution)
    if not len(data):  # refused before a run directory exists: batches of nothing divide by zero
        raise DataError(f"data set {path} holds 0 images; give a data set with at least one image")
    return data


def native_resolution(source: str | Path) -> int:
    """The side of the square images `source` holds (the shorter side of its first image)."""
    path = Path(source)
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            if "images" in f:
                return int(min(f["images"].shape[1:3]))
    elif path.is_dir():
        if any((path / b).is_file() for b in CIFAR_BATCHES):
            return 32
        from PIL import Image

        first = next((p for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES), None)
        if first is not None:
            with Image.open(first) as im:
                return min(im.size)
    return load_dataset(path, 1).resolution  # raises the loader's own clear error


def shapes_dataset(count: int, resolution: int, seed: int = 0) -> ImageDataset:
    images = torch.stack([render_shapes(i, resolution, resolution, seed) for i in range(count)])
    return ImageDataset(to_uint8(images), name=f"shapes[{count}]")


def npz_dataset(path: Path, resolution: int) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f:
                raise DataError(f"{path} has no array 'images' (found: {sorted(f.keys())}); save images as (N, H, W, 3) uint8")
            mapped = mapped_npz_array(path, "images")
            images = f["images"] if mapped is None else mapped
            labels = f["labels"] if "labels" in f else None
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"cannot read {path} as .npz: {err}") from None
    if images.ndim == 3:  # greyscale (N, H, W)
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise DataError(f"{path}: 'images' must be (N, H, W, 3) or greyscale (N, H, W[, 1]) uint8, "
                        f"got {images.shape} {images.dtype}")
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
    if mapped is None or nchw.shape[-2:] != (resolution, resolution):
        nchw = resize_square(nchw, resolution)
    return ImageDataset(nchw, _labels(labels, len(images), path), name=path.name)


def mapped_npz_array(path: Path, name: str) -> np.ndarray | None:
    """Array `name` of an .npz memory-mapped (copy-on-write) when the archive stores it uncompressed, as
    np.savez does: the torchrun processes of one machine then share one copy of its pages. None when it is
    compressed (np.savez_compressed; it must be read into each process's memory) or unusual."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset + 26)  # a zip local header: 26 bytes, the name's and extra field's lengths
            name_length, extra_length = struct.unpack("<HH", f.read(4))
            f.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                return None
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read(f)
            offset = f.tell()
    except (KeyError, OSError, ValueError, struct.error, zipfile.BadZipFile):
        return None
    if fortran_order or dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)


def cifar_dataset(path: Path, resolution: int) -> ImageDataset:
    arrays, labels = [], []
    for name in CIFAR_BATCHES:
        f = path / name
        if not f.is_file():
            continue
        try:
            batch = load_numpy_pickle(f.read_bytes(), encoding="bytes")
            arrays.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except Exception as err:
            raise DataError(f"cannot read CIFAR-10 batch {f}: {err}") from None
    images = torch.from_numpy(np.concatenate(arrays))
    return ImageDataset(resize_square(images, resolution), torch.from_numpy(np.concatenate(labels)), name=path.name)


def folder_dataset(path: Path, resolution: int) -> ImageDataset:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {path}")
    images = []
    with progress_bar(f"reading {path.name}", transient=True) as bar:
        for f in bar.track(files):
            try:
                with Image.open(f) as im:
                    arr = np.array(im.convert("RGB"))
            except (UnidentifiedImageError, OSError, ValueError) as err:
                raise DataError(f"cannot read image {f}: {err}; remove or replace the file") from None
            images.append(resize_square(torch.from_numpy(arr).permute(2, 0, 1)[None], resolution))
    return ImageDataset(torch.cat(images), name=path.name)


def resize_square(images: torch.Tensor, resolution: int, chunk: int = 512) -> torch.Tensor:
    """Centre-crop uint8 (N, C, H, W) images to a square and resize to `resolution` (antialiased)."""
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    images = images[..., top : top + s, left : left + s]
    if s == resolution:
        return images.contiguous()
    out = []
    for part in images.split(chunk):
        x = F.interpolate(part.contiguous().float(), size=(resolution, resolution), mode="bicubic", antialias=True,
                          align_corners=False)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)




def _labels(labels: np.ndarray | None, n: int, path: Path) -> torch.Tensor | None:
    if labels is None:
        return None
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError(f"{path}: 'labels' must be ({n},) non-negative integers, got {labels.shape} {labels.dtype}")
    return torch.from_numpy(labels.astype(np.int64))
