"""A batch of image functions: generated INR weights + a fixed render rule.

An image function maps a 2-D coordinate c = (y, x) ∈ [-1, 1]² to a colour (paper eq. 6, 8–9): Fourier
features of c, then an MLP whose weights come from the generator, ReLU between layers and no output
activation. Coordinates are pixel centres, so an H×W render samples y_i = −1 + (2i+1)/H,
x_j = −1 + (2j+1)/W, and any H, W (non-square included) renders the same function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from cmzoo.errors import CheckpointError
from cmzoo.files import write_bytes

FORMAT = "cmzoo-image-function"
FORMAT_VERSION = 1
BACKBONE = "func"
# Automatic chunking keeps each (B, chunk, width) activation under this many elements (64 MiB in fp32).
CHUNK_ELEMENTS = 1 << 24


# ---------------------------------------------------------------------------------------------------
# Coordinates and features (pure functions)
# ---------------------------------------------------------------------------------------------------


def pixel_centres(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel centres of an H×W image in [-1, 1], row-major, as (y, x): (H·W, 2)."""
    y = -1 + (2 * torch.arange(height, device=device, dtype=torch.float64) + 1) / height
    x = -1 + (2 * torch.arange(width, device=device, dtype=torch.float64) + 1) / width
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(-1, 2).to(dtype)


def fourier_frequencies(n_freqs: int, max_freq: float, device: torch.device | str | None = None) -> torch.Tensor:
    """`n_freqs` log-spaced frequencies from 1 to `max_freq` (Trans-INR's positional encoding): (n,)."""
    return torch.exp(torch.linspace(0.0, math.log(max_freq), n_freqs, device=device, dtype=torch.float64))


def fourier_features(coords: torch.Tensor, n_freqs: int, max_freq: float) -> torch.Tensor:
    """[cos(π c w), sin(π c w)] for every axis of c (…, 2) and frequency w: (…, 4·n_freqs)."""
    w = fourier_frequencies(n_freqs, max_freq, coords.device).to(coords.dtype)
    angles = (math.pi * coords.unsqueeze(-1) * w).flatten(-2)  # (…, 2·n): axis-major, frequency-minor
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def variational_coordinates(
    coords: torch.Tensor, height: int, width: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Coordinates jittered by N(0, (0.3/size)²) per axis, clipped to ±0.5/size, i.e. ±0.25 px."""
    size = torch.tensor([height, width], device=coords.device, dtype=coords.dtype)
    noise = torch.randn(coords.shape, generator=generator, device=coords.device, dtype=coords.dtype)
    return coords + (0.3 * noise).clamp(-0.5, 0.5) / size


def inr_layer_shapes(in_features: int, width: int, depth: int, channels: int) -> list[tuple[int, int]]:
    """(d_in + 1, d_out) of each of the `depth` linear layers of the INR; the +1 row is the bias."""
    dims = [in_features] + [width] * (depth - 1) + [channels]
    return [(d_in + 1, d_out) for d_in, d_out in zip(dims[:-1], dims[1:])]


# ---------------------------------------------------------------------------------------------------
# The image function
# ---------------------------------------------------------------------------------------------------


class INRImageFunction:
    """B image functions: per-layer weights (B, d_in+1, d_out) (last row = bias) and the render rule."""

    def __init__(self, weights: Sequence[torch.Tensor], n_freqs: int, max_freq: float) -> None:
        self.weights = list(weights)
        self.n_freqs = int(n_freqs)
        self.max_freq = float(max_freq)
        expected = 4 * self.n_freqs
        for t, w in enumerate(self.weights):
            # Internal invariant: the generator and `load` always build consistent layer shapes.
            assert w.ndim == 3 and w.shape[0] == self.weights[0].shape[0], f"layer {t}: shape {tuple(w.shape)}"
            assert w.shape[1] == expected + 1, f"layer {t}: d_in + 1 = {w.shape[1]}, expected {expected + 1}"
            expected = w.shape[2]

    @property
    def channels(self) -> int:
        """Colour channels of the rendered image."""
        return self.weights[-1].shape[2]

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def feature_dtype(self) -> torch.dtype:
        # Coordinates and features in at least fp32: at 1024 cycles a bf16 coordinate scrambles the phase.
        return torch.promote_types(self.dtype, torch.float32)

    def __len__(self) -> int:
        return self.weights[0].shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor) -> INRImageFunction:
        """The functions at `index` of the batch (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 or None)
        return INRImageFunction([w[index] for w in self.weights], self.n_freqs, self.max_freq)

    @classmethod
    def cat(cls, functions: Sequence[INRImageFunction]) -> INRImageFunction:
        """One batch of all `functions` (which share a render rule), in order."""
        first = functions[0]
        if any((f.n_freqs, f.max_freq) != (first.n_freqs, first.max_freq) for f in functions):
            raise ValueError("image functions with different render rules cannot be concatenated")
        layers = zip(*(f.weights for f in functions))
        return cls([torch.cat(ws) for ws in layers], first.n_freqs, first.max_freq)

    def scaled(self, factors: torch.Tensor) -> INRImageFunction:
        """The functions multiplied by per-function `factors` (B,): the output layer is linear."""
        last = self.weights[-1] * factors.to(self.weights[-1]).reshape(-1, 1, 1)
        return INRImageFunction([*self.weights[:-1], last], self.n_freqs, self.max_freq)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> INRImageFunction:
        """The same functions with weights on `device` (and optionally cast to `dtype`)."""
        return INRImageFunction([w.to(device=device, dtype=dtype) for w in self.weights], self.n_freqs, self.max_freq)

    def detach(self) -> INRImageFunction:
        """The same functions, cut from the autograd graph."""
        return INRImageFunction([w.detach() for w in self.weights], self.n_freqs, self.max_freq)

    def query(self, coords: torch.Tensor) -> torch.Tensor:
        """Colours at coordinates (N, 2) shared by the batch or (B, N, 2) per function: (B, N, C)."""
        h = fourier_features(coords.to(self.feature_dtype), self.n_freqs, self.max_freq).to(self.dtype)
        for t, wb in enumerate(self.weights):
            h = h @ wb[:, :-1] + wb[:, -1:]  # (N or B, n, d_in) @ (B, d_in, d_out) → (B, n, d_out)
            if t < len(self.weights) - 1:
                h = torch.relu(h)
        return h

    def render(
        self,
        height: int,
        width: int,
        chunk: int | None = None,
        coords_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Render on the pixel centres of an H×W image: (B, C, H, W); `coords_noise` for training only.

        Coordinates are processed `chunk` at a time (None: as many as keep each activation under
        CHUNK_ELEMENTS). With `coords_noise`, every function gets its own variational coordinates,
        drawn from `generator` (None: the global RNG, so `torch.random.fork_rng` reproduces them).
        """
        coords = pixel_centres(height, width, self.device, self.feature_dtype)
        if coords_noise:
            coords = variational_coordinates(coords.expand(len(self), -1, -1), height, width, generator)
        widest = max(w.shape[2] for w in self.weights)
        step = chunk or max(1, CHUNK_ELEMENTS // (len(self) * widest))
        n = height * width
        colours = [self.query(coords[..., i : i + step, :]) for i in range(0, n, step)]
        out = colours[0] if len(colours) == 1 else torch.cat(colours, dim=1)  # (B, H·W, C)
        return out.transpose(1, 2).reshape(len(self), self.channels, height, width)

    def render_pixels(
        self,
        height: int,
        width: int,
        pixels: torch.Tensor,
        coords_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Colours at the pixel centres `pixels` (B, n) (row-major indices) of an H×W grid: (B, C, n).

        Supervising a subset of a large grid costs only n queries per function (training above the
        input's size); `coords_noise` jitters them by the H×W grid's pixel size, as :meth:`render`.
        """
        coords = pixel_centres(height, width, self.device, self.feature_dtype)[pixels.to(self.device)]  # (B, n, 2)
        if coords_noise:
            coords = variational_coordinates(coords, height, width, generator)
        return self.query(coords).transpose(1, 2)

    # -- persistence --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the weights and the render rule to a safetensors file; an OS error is one OutputError line."""
        tensors = {f"layer{t}": w.detach().cpu().contiguous() for t, w in enumerate(self.weights)}
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "backbone": BACKBONE,
            "render": "fourier-mlp-relu",
            "n_freqs": str(self.n_freqs),
            "max_freq": repr(self.max_freq),
            "layers": str(len(self.weights)),
        }
        write_bytes(path, st_save(tensors, metadata=metadata), "image functions")

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> INRImageFunction:
        """Read functions written by :meth:`save`; errors name the file and what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"image function file {str(path)!r} does not exist; give the path of a saved .safetensors"
            )
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise CheckpointError(
                        f"{str(path)!r} is not a cmzoo image function (format {meta.get('format')!r}, "
                        f"expected {FORMAT!r}); save functions with INRImageFunction.save"
                    )
                if meta.get("format_version") != str(FORMAT_VERSION):
                    raise CheckpointError(
                        f"{str(path)!r} has image-function format version {meta.get('format_version')!r}; "
                        f"this cmzoo reads version {FORMAT_VERSION}"
                    )
                weights = [f.get_tensor(f"layer{t}") for t in range(int(meta["layers"]))]
                return cls(weights, int(meta["n_freqs"]), float(meta["max_freq"]))
        except CheckpointError:
            raise
        except Exception as err:
            raise CheckpointError(f"cannot read image function {str(path)!r}: {err}") from err

    def __repr__(self) -> str:
        shapes = ", ".join(f"{w.shape[1] - 1}→{w.shape[2]}" for w in self.weights)
        return (
            f"INRImageFunction(batch={len(self)}, layers=[{shapes}], n_freqs={self.n_freqs}, "
            f"max_freq={self.max_freq:g}, dtype={self.dtype}, device={self.device})"
        )
