"""benchmarks/device_check.sh --dry-run: the GPU check's steps on the CPU with tiny presets, so the script
cannot rot. The dry run's compile step is left out here (DEVICE_CHECK_SKIP=compile): it is the training
step again with torch.compile disabled, and leaving it out keeps this test near a minute on 2 cores."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_passes_and_leaves_at_most_eight_files(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "DEVICE_CHECK_SKIP": "compile",
           "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry-run"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=400)
    out = tmp_path / "out"
    summary = (out / "summary.md").read_text()
    assert r.returncode == 0, r.stderr[-2000:] + summary
    assert sorted(p.name for p in out.iterdir()) == ["device_check.log", "results.tar.gz", "summary.md"]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert [row.split(" | ")[0][2:].split(" ")[0] for row in rows] == [
        "preflight", "train", "resume", "eval", "bench", "Table", "bench"]
    assert not any("failed" in row or "timed out" in row for row in rows), summary
    assert "bitwise equal" in rows[2] and "Inception pass" in rows[3] and "func:" in rows[4]
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"./bench_train/results.json", "./bench_infer/results.json", "./table3/table3.md"} <= names
    assert not list(tmp_path.glob("cmzoo_device_check.*"))  # the work folder (checkpoints) is removed
