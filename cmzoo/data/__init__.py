"""Data: in-memory image sets in [-1, 1] from folders, .npz, CIFAR-10 batches or procedural shapes."""

from cmzoo.data.dataset import ImageDataset, batch_indices, from_uint8, to_uint8
from cmzoo.data.shapes import render_shapes
from cmzoo.data.sources import load_dataset, native_resolution, resize_square

__all__ = ["ImageDataset", "batch_indices", "from_uint8", "load_dataset", "native_resolution", "render_shapes",
           "resize_square", "to_uint8"]
