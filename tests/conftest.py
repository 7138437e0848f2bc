from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"),
                     help="cmzoo: run the device-sensitive tests (the `device` fixture: seeded sampling, train + "
                          "resume, eval) there; every other test runs on the CPU")


@pytest.fixture(autouse=True)
def cpu_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the CPU, in this process and in the ones it starts, so that on a GPU machine `auto` does not
    move the CPU-calibrated tests to CUDA; a test taking `device` under `--device cuda` keeps the GPU."""
    if "device" in request.fixturenames and request.config.getoption("--device") == "cuda":
        return
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    """The device of the device-sensitive tests: `pytest --device cuda` (skipped where there is no GPU), else cpu."""
    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda, but CUDA is not available here")
    return name


@pytest.fixture
def shared_data() -> Path:
    """The data folder shared beside the repository (CelebA); tests using it skip when it is absent."""
    if not (SHARED_DATA / "celeba_64.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One OpenMP thread: two on 2 shared cores make a tiny func forward up to 100× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
