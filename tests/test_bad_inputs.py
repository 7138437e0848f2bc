"""Bad inputs and faults, command by command: each ends in exactly one `cmzoo: error:` line, the exit
status the CLI promises (2; 130 for an interrupted run; 0 where the fault is repaired) and no traceback,
and what was there before — the shared runs, and whatever each row says — survives on disk.

Faults are made on the fly: a full disk is a symlink to /dev/full where the file will be written; a
read-only location is a path under /sys, which refuses new files to every user (root included,
whom directory permissions do not stop); a torn metrics.jsonl ends in half a record; a run is killed
during pre-training. Most rows call `cmzoo.cli.main` in this process, on three tiny runs trained once.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmzoo.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from cmzoo.cli import main
from cmzoo.run import load_image_function
from cmzoo.train import pretrain as pretrain_module

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

DIT = ["--backbone", "dit", "--set", "dim=32", "num_heads=2", "depth=1"]
FUNC = ["--backbone", "func", "--set", "dim=32", "num_heads=2", "encoder_depth=1", "decoder_depth=1"]
FAST = """
resolution = 16
batch_size = 2
steps = 2
sample_every = 0
denoise_every = 0
checkpoint_every = 0
grid_size = 4
pretrain_steps = 0
device = "cpu"
"""


def read_only_location() -> str:
    """A folder no one may create files in: /sys (sysfs) refuses them even to root."""
    probe = Path("/sys/cmzoo-bad-inputs")
    try:
        probe.mkdir()
    except OSError:
        return str(probe)
    probe.rmdir()
    pytest.skip("no read-only location: /sys accepts new folders here")


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file under `root` (links to /dev/full are not read) → its SHA-1."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three tiny runs (dit, func, func pre-training), saved image functions, data, bad files and fault links."""
    w = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    np.savez(w / "data16.npz", images=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    np.savez(w / "zero.npz", images=np.zeros((0, 16, 16, 3), np.uint8))
    (w / "fast.toml").write_text(f'data = "{w / "data16.npz"}"\n{FAST}')
    (w / "empty").mkdir()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(w / "image.png")
    Image.fromarray(np.where(np.arange(16)[:, None] < 8, 255, 0).repeat(16, 1).astype(np.uint8)).save(w / "mask.png")
    (w / "random.bin").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (w / "binary.toml").write_bytes(bytes(range(128, 256)))
    # a crafted header: "my JSON header is 1 TiB long" at the start of a 10-byte file
    (w / "crafted.safetensors").write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    for name in ("full.png", "full.safetensors", "full.json", "full.html"):
        (w / name).symlink_to("/dev/full")
    fast = ["--config", str(w / "fast.toml")]
    assert main(["train", *fast, *DIT, "--out", str(w / "dit")]) == 0
    assert main(["train", *fast, *FUNC, "--out", str(w / "func")]) == 0
    assert main(["pretrain", "--data", str(w / "data16.npz"), "--resolution", "16", "--steps", "2", "--batch-size", "2",
                 *FUNC, "--out", str(w / "pre")]) == 0
    assert main(["sample", "--run", str(w / "func"), "--n", "4", "--save-functions", str(w / "f.safetensors"),
                 "--out", str(w / "f.png")]) == 0
    return w


# ---- setups: what a row needs in its own folder t (the shared world is never changed) ----------------


def copy_run(name):
    def setup(w, t):
        shutil.copytree(w / name, t / name)
    return setup


def edit_config(name, change):
    def setup(w, t):
        shutil.copytree(w / name, t / "run")
        config = json.loads((t / "run" / "config.json").read_text())
        change(config)
        (t / "run" / "config.json").write_text(json.dumps(config))
    return setup


def binary_config(w, t):
    shutil.copytree(w / "dit", t / "run")
    (t / "run" / "config.json").write_bytes(bytes(range(128, 256)))


def torn_log(w, t):
    shutil.copytree(w / "dit", t / "run")
    with open(t / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.5, "l')  # a crash in the middle of a record


def full_disk_at_checkpoint_4(w, t):
    shutil.copytree(w / "dit", t / "run")
    (t / "run" / "checkpoints" / ".step_00000004.safetensors.tmp").symlink_to("/dev/full")


def a_file_in_the_way(w, t):
    (t / "file.txt").write_text("not a folder")


def results_json_is_a_folder(w, t):
    (t / "bench" / "results.json").mkdir(parents=True)


# ---- checks: what must hold on disk after the row ------------------------------------------------


def absent(*names):
    def check(w, t, out):
        for name in names:
            assert not (t / name).exists(), f"{name} was written"
    return check


def dit_copy_unchanged(w, t, out):
    assert snapshot(t / "dit") == snapshot(w / "dit")


def pre_copy_unchanged(w, t, out):
    assert snapshot(t / "pre") == snapshot(w / "pre")


def checkpoint_3_kept_and_resume_finishes(w, t, out):
    names = [p.name for p in list_checkpoints(t / "run" / "checkpoints")]
    assert names == ["step_00000002.safetensors", "step_00000003.safetensors"], names
    assert load_checkpoint(t / "run" / "checkpoints" / "step_00000003.safetensors")["step"] == 3
    assert not list((t / "run" / "checkpoints").glob(".*.tmp")), "the failed write left its temp file"
    assert main(["train", "--resume", str(t / "run")]) == 0
    assert load_checkpoint(latest_checkpoint(t / "run" / "checkpoints"))["step"] == 4


def resumed_past_the_torn_line(w, t, out):
    lines = (t / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole again
    assert [r["step"] for r in records if "loss" in r][-1] == 3
    assert load_checkpoint(latest_checkpoint(t / "run" / "checkpoints"))["step"] == 3


def report_notes_the_torn_line(w, t, out):
    torn = len((t / "run" / "metrics.jsonl").read_text().splitlines())
    page = (t / "run" / "report.html").read_text()
    assert f"metrics.jsonl line {torn} is not a JSON record (torn by a crash while writing)" in page


def functions_saved_first(w, t, out):
    assert len(load_image_function(t / "f.safetensors")) == 4
    assert not (t / "s.png").exists()


def metrics_printed(w, t, out):
    assert "| reference | samples | reference images | FID |" in out and "| data16.npz@16 | 8 | 8 |" in out


# ---- the table -----------------------------------------------------------------------------------

RO = "{ro}/x"
ERR = "cmzoo: error: "


def row(command, message, *, code=2, setup=None, check=None, id):
    return pytest.param(command, message, code, setup, check, id=id)


ROWS = [
    # train
    row("train --config {w}/empty --out {t}/run", r"config file .*empty is a directory", check=absent("run"),
        id="train-config-is-a-directory"),
    row("train --config {w}/binary.toml --out {t}/run", r"config file .*binary.toml is not text: it holds binary data",
        check=absent("run"), id="train-config-binary"),
    row("train --config {w}/image.png --out {t}/run", r"is not text: it holds a PNG image", id="train-config-png"),
    row("train --config {w}/fast.toml --data {w}/zero.npz --out {t}/run", r"zero.npz holds 0 images",
        check=absent("run"), id="train-data-zero-images"),
    row("train --config {w}/fast.toml --data {w}/empty --out {t}/run", r"no images .* found under .*empty",
        check=absent("run"), id="train-data-empty-folder"),
    row("train --config {w}/fast.toml --backbone dit --set depth=-2 --out {t}/run",
        r"backbone 'dit': field 'depth': Input should be greater than or equal to 1", check=absent("run"),
        id="train-dit-depth-negative"),
    row("train --config {w}/fast.toml --backbone dit --set num_heads=0 --out {t}/run", r"field 'num_heads': .*greater than 0",
        id="train-heads-zero"),
    row("train --config {w}/fast.toml --backbone func --set inr_width=-1 --out {t}/run",
        r"field 'inr_width': .*greater than 0", id="train-func-width-negative"),
    row("train --config {w}/fast.toml --backbone uvit --set depth=0 --out {t}/run",
        r"field 'depth': .*greater than or equal to 1", id="train-uvit-depth-zero"),
    row("train --config {w}/fast.toml --steps 0 --out {t}/run", r"field 'steps'", id="train-steps-zero"),
    row("train --config {w}/fast.toml --batch-size 0 --out {t}/run", r"field 'batch_size'", id="train-batch-zero"),
    row("train --steps many --out {t}/run", r"argument --steps: invalid int value: 'many' \(`cmzoo train --help`",
        id="train-steps-not-a-number"),
    row("train --config {w}/fast.toml --out {w}/data16.npz", r"run directory .*data16.npz is a file, not a folder",
        id="train-out-is-a-file"),
    row("train --config {w}/fast.toml --out " + RO, r"cannot write run directory /sys/.*: Permission denied \(EACCES\)",
        id="train-out-read-only"),
    row("train --resume {t}/dit --backbone func", r"run .*dit holds dit weights, but the resumed config says func; resume "
        r"with the run's own backbone", setup=copy_run("dit"), check=dit_copy_unchanged, id="train-resume-other-backbone"),
    row("train --resume {t}/dit --set depth=3", r"holds dit \(backbone_overrides \{.*\"depth\": 1\}\) weights, but the "
        r"resumed config says dit \(backbone_overrides \{\"depth\": 3\}\)", setup=copy_run("dit"),
        check=dit_copy_unchanged, id="train-resume-other-fields"),
    row("train --resume {t}/pre", r"is a reconstruction pre-training run, not a training run; start training from it "
        r"with `cmzoo train --init-from", setup=copy_run("pre"), check=pre_copy_unchanged, id="train-resume-a-pretrain-run"),
    row("train --resume {t}/nowhere", r"nowhere is not a cmzoo run directory", id="train-resume-nowhere"),
    row("train --resume {t}/run --steps 4 --checkpoint-every 1",
        r"cannot write checkpoint .*step_00000004.safetensors: No space left on device \(ENOSPC\); free some space .*"
        r"earlier checkpoints are kept", setup=full_disk_at_checkpoint_4, check=checkpoint_3_kept_and_resume_finishes,
        id="train-full-disk-at-a-checkpoint"),
    row("train --resume {t}/run --steps 3", None, code=0, setup=torn_log, check=resumed_past_the_torn_line,
        id="train-resume-after-a-torn-log"),
    # pretrain
    row("pretrain --backbone dit --data {w}/data16.npz --steps 1 --out {t}/run", r"needs capability 'pretrain'",
        check=absent("run"), id="pretrain-backbone-without-it"),
    row("pretrain --data {w}/zero.npz --steps 1 --out {t}/run", r"zero.npz holds 0 images", check=absent("run"),
        id="pretrain-data-zero-images"),
    row("pretrain --set decoder_depth=0 --steps 1 --out {t}/run", r"field 'decoder_depth'", id="pretrain-depth-zero"),
    row("pretrain --resume {t}/dit", r"dit is a consistency-training run, not a pre-training run; continue it with "
        r"`cmzoo train --resume", setup=copy_run("dit"), check=dit_copy_unchanged, id="pretrain-resume-a-training-run"),
    row("pretrain --resume {t}/pre --set dim=64", r"holds func \(backbone_overrides .*\) weights, but the resumed "
        r"config says func", setup=copy_run("pre"), check=pre_copy_unchanged, id="pretrain-resume-other-fields"),
    row("pretrain --resume {t}/nowhere", r"is not a cmzoo run directory", id="pretrain-resume-nowhere"),
    row("pretrain --data {w}/data16.npz --steps 1 --out {w}/pre", r"pre already holds a run", id="pretrain-out-holds-a-run"),
    # sample
    row("sample --run {w}/dit --out {t}/s.xyz", r"sample grid .*s.xyz: cannot write a file ending in '.xyz'; end the "
        r"name in a known suffix such as .png", check=absent("s.xyz"), id="sample-unknown-suffix"),
    row("sample --run {w}/dit --out {t}", r"sample grid .* is a directory; give a file name", id="sample-out-is-a-directory"),
    row("sample --run {w}/dit --out " + RO + ".png", r"cannot write sample grid /sys/.*: Permission denied \(EACCES\); "
        r"the location is not writable", id="sample-read-only"),
    row("sample --run {w}/dit --out {t}/file.txt/s.png", r"file.txt is a file, not a folder", setup=a_file_in_the_way,
        id="sample-folder-is-a-file"),
    row("sample --run {w}/func --n 4 --save-functions {t}/f.safetensors --out {w}/full.png",
        r"cannot write sample grid .*full.png: No space left on device \(ENOSPC\)", check=functions_saved_first,
        id="sample-full-disk-keeps-the-functions"),
    row("sample --run {w}/func --n 4 --save-functions {w}/full.safetensors --out {t}/s.png",
        r"cannot write image functions .*full.safetensors: No space left on device \(ENOSPC\)", check=absent("s.png"),
        id="sample-full-disk-for-the-functions"),
    row("sample --run {w}/dit --n 0 --out {t}/s.png", r"--n \(images to generate\) must be ≥ 1, got 0", id="sample-n-zero"),
    row("sample --run {w}/dit --n -1 --out {t}/s.png", r"--n .* must be ≥ 1, got -1", id="sample-n-negative"),
    row("sample --run {w}/dit --batch-size 0 --out {t}/s.png", r"--batch-size .* must be ≥ 1, got 0",
        id="sample-batch-zero"),
    row("sample --run {w}/dit --steps 0 --out {t}/s.png", r"--steps must be ≥ 1, got 0", id="sample-steps-zero"),
    row("sample --run {w}/dit --steps 80 -1 --out {t}/s.png", r"\[σ_min, σ_max\] = \[0.002, 80\]",
        check=absent("s.png"), id="sample-sigma-negative"),
    row("sample --run {w}/dit --steps 80 0 --out {t}/s.png", r"\[σ_min, σ_max\]", id="sample-sigma-zero"),
    row("sample --run {w}/dit --steps nan --out {t}/s.png", r"finite and strictly decreasing, got \[nan\]",
        id="sample-sigma-nan"),
    row("sample --run {w}/dit --steps inf 1 --out {t}/s.png", r"finite and strictly decreasing, got \[inf, 1.0\]",
        id="sample-sigma-inf"),
    row("sample --run {w}/dit --steps 1 80 --out {t}/s.png", r"strictly decreasing", id="sample-sigma-increasing"),
    row("sample --run {w}/dit --steps 81 1 --out {t}/s.png", r"leaves the trained range", id="sample-sigma-above-max"),
    row("sample --run {w}/func --sizes 100000x100000 --out {t}/s.png",
        r"size 100000x100000 is outside 1 to 4096 px per side", id="sample-size-too-large"),
    row("sample --run {w}/func --sizes 0x8 --out {t}/s.png", r"size '0x8' must be positive", id="sample-size-zero"),
    row("sample --run {w}/pre --weights target --out {t}/s.png", r"holds no 'target' weights \(a reconstruction "
        r"pre-training run keeps only its online network\); choose --weights ema or online", id="sample-target-of-pretrain"),
    row("sample --run {t}/run --out {t}/s.png", r"run .*run \(step_00000002.safetensors\) holds func weights, but its "
        r".*config.json says dit", setup=edit_config("func", lambda c: c.update(backbone="dit")),
        id="sample-weights-of-another-backbone"),
    row("sample --run {t}/run --out {t}/s.png", r"config.json names no backbone .* its checkpoints hold dit weights: add "
        r"it back, e.g. \"backbone\": \"dit\"", setup=edit_config("dit", lambda c: c.pop("backbone")),
        id="sample-config-without-backbone"),
    row("sample --run {t}/run --out {t}/s.png", r"run config .*config.json is not text: it holds binary data",
        setup=binary_config, id="sample-config-binary"),
    row("sample --run {w}/dit --n many", r"argument --n: invalid int value: 'many'", id="sample-n-not-a-number"),
    row("sample --run {w}/data16.npz --out {t}/s.png", r"is not a cmzoo run directory", id="sample-run-is-a-file"),
    # render
    row("render {w}/image.png --size 8 --out {t}/r.png", r"image.png is not a safetensors file: it holds a PNG image",
        id="render-a-png"),
    row("render {w}/random.bin --size 8 --out {t}/r.png", r"random.bin is not a safetensors file: it holds binary data "
        r"of no known kind", id="render-random-bytes"),
    row("render {w}/crafted.safetensors --size 8 --out {t}/r.png", r"its header length 1099511627776 does not fit its "
        r"10 bytes", id="render-crafted-header-length"),
    row("render {w}/dit/checkpoints/step_00000002.safetensors --size 8 --out {t}/r.png",
        r"is a training checkpoint, not saved image functions; save them with `cmzoo sample", id="render-a-checkpoint"),
    row("render {w}/empty --size 8 --out {t}/r.png", r"image function file .*empty is a directory", id="render-a-folder"),
    row("render {w}/f.safetensors --size 100000x100000 --out {t}/r.png", r"outside 1 to 4096 px per side",
        id="render-size-too-large"),
    row("render {w}/f.safetensors --size 0 --out {t}/r.png", r"size '0' must be positive", id="render-size-zero"),
    row("render {w}/f.safetensors --size 8 --out {t}/r.xyz", r"rendered grid .*r.xyz: cannot write a file ending in",
        id="render-unknown-suffix"),
    row("render {w}/f.safetensors --size 8 --out {w}/full.png", r"cannot write rendered grid .*: No space left on device",
        id="render-full-disk"),
    # edit and interpolate
    row("edit --run {w}/dit --task inpaint --image {w}/image.png --mask {w}/mask.png --out {t}",
        r"edited image .* is a directory", id="edit-out-is-a-directory"),
    row("edit --run {w}/dit --task inpaint --image {w}/image.png --mask {w}/mask.png --steps nan --out {t}/e.png",
        r"finite and strictly decreasing", check=absent("e.png"), id="edit-sigma-nan"),
    row("edit --run {w}/func --task inpaint --image {w}/image.png --mask {w}/mask.png --size 5000 --out {t}/e.png",
        r"size 5000x5000 is outside 1 to 4096 px per side", id="edit-size-too-large"),
    row("edit --run {w}/dit --task inpaint --image {w}/empty --mask {w}/mask.png --out {t}/e.png",
        r"image file .*empty is a directory; give a PNG or JPEG file", id="edit-image-is-a-folder"),
    row("edit --run {w}/dit --task blur --image {w}/image.png --out {t}/e.png", r"argument --task: invalid choice",
        id="edit-unknown-task"),
    row("interpolate --run {w}/dit --seeds 1 2 --frames 0 --out {t}/i.png", r"--frames must be at least 2",
        id="interpolate-frames-zero"),
    row("interpolate --run {w}/dit --seeds 1 2 --out " + RO + ".png", r"cannot write interpolation strip /sys/.*EACCES",
        id="interpolate-read-only"),
    row("interpolate --run {w}/func --seeds 1 2 --size 5000 --out {t}/i.png", r"outside 1 to 4096 px per side",
        id="interpolate-size-too-large"),
    # eval
    row("eval --run {w}/dit --data {w}/data16.npz --n 0 --out {t}/e.json", r"--n \(samples to score\) must be ≥ 4, got 0",
        id="eval-n-zero"),
    row("eval --run {w}/dit --data {w}/data16.npz --batch-size 0 --out {t}/e.json", r"--batch-size .* must be ≥ 1",
        id="eval-batch-zero"),
    row("eval --images {w}/data16.npz --data {w}/data16.npz --n-reference 2 --out {t}/e.json",
        r"--n-reference \(reference images\) must be ≥ 4, got 2", id="eval-n-reference-too-small"),
    row("eval --run {w}/dit --data {w}/data16.npz --out {t}", r"evaluation results .* is a directory",
        id="eval-out-is-a-directory"),
    row("eval --run {w}/dit --data {w}/data16.npz --n 8 --out {w}/full.json",
        r"cannot write evaluation results .*full.json: No space left on device \(ENOSPC\); free some space or write "
        r"elsewhere; the numbers are printed above", check=metrics_printed, id="eval-full-disk-keeps-the-numbers"),
    # bench
    row("bench --only params --out {w}/data16.npz", r"bench results folder .*data16.npz is a file, not a folder",
        id="bench-out-is-a-file"),
    row("bench --only params --out " + RO, r"cannot write bench results folder /sys/.*EACCES", id="bench-read-only"),
    row("bench --only params --batch-size 0 --out {t}/b", r"field 'batch_size'", id="bench-batch-zero"),
    row("bench --config {w}/empty", r"config file .*empty is a directory", id="bench-config-is-a-directory"),
    row("bench --only params --backbones nope --out {t}/b", r"unknown backbone 'nope'", id="bench-unknown-backbone"),
    row("bench --only params --backbones dit --resolutions 16 --out {t}/bench",
        r"cannot write bench results .*results.json: Is a directory \(EISDIR\)", setup=results_json_is_a_folder,
        id="bench-results-file-is-a-folder"),
    # report
    row("report {w}/dit --out {w}/full.html", r"cannot write report .*full.html: No space left on device \(ENOSPC\)",
        id="report-full-disk"),
    row("report {w}/dit --out {t}", r"report .* is a directory", id="report-out-is-a-directory"),
    row("report {w}/dit --out " + RO + ".html", r"cannot write report /sys/.*EACCES", id="report-read-only"),
    row("report {t}/nowhere", r"nowhere is neither a run directory", id="report-nowhere"),
    row("report {t}/run", r"run config .*config.json is not text", setup=binary_config, id="report-config-binary"),
    row("report {t}/run", None, code=0, setup=torn_log, check=report_notes_the_torn_line, id="report-torn-log"),
]


@pytest.mark.parametrize("command, message, code, setup, check", ROWS)
def test_bad_input_ends_in_one_line_and_work_survives(world, tmp_path, capsys, monkeypatch, command, message, code,
                                                      setup, check):
    monkeypatch.setenv("CMZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a default output lands in the row's own folder
    ro = read_only_location() if "{ro}" in command else ""
    if setup is not None:
        setup(world, tmp_path)
    before = snapshot(world)
    capsys.readouterr()
    assert main(command.format(w=world, t=tmp_path, ro=ro).split()) == code, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(ERR)]
    if message is None:
        assert not errors, err
    else:
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
        assert re.search(message, errors[0]), errors[0]
    assert snapshot(world) == before, "a bad input changed the shared runs"
    if check is not None:
        check(world, tmp_path, out)


def test_the_table_covers_every_command():
    commands = {p.values[0].split()[0] for p in ROWS}
    assert commands == {"train", "pretrain", "sample", "render", "edit", "interpolate", "eval", "bench", "report"}
    assert len(ROWS) >= 40


# ---- a kill during pre-training ------------------------------------------------------------------


def test_ctrl_c_in_cmzoo_pretrain_writes_a_checkpoint_and_resume_finishes(world, tmp_path, capsys):
    run = tmp_path / "pre"
    command = [sys.executable, "-m", "cmzoo", "pretrain", "--data", str(world / "data16.npz"), "--resolution", "16",
               "--batch-size", "2", "--steps", "5000", "--checkpoint-every", "3", *FUNC, "--out", str(run)]
    proc = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob("*.sha256")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(ERR)]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err
    assert "stopped by signal SIGINT at pre-training step" in errors[0] and f"`cmzoo pretrain --resume {run}`" in errors[0]
    stopped = load_checkpoint(latest_checkpoint(run / "checkpoints"))["step"]
    assert 3 <= stopped < 5000
    assert main(["pretrain", "--resume", str(run), "--steps", str(stopped + 2)]) == 0
    assert load_checkpoint(latest_checkpoint(run / "checkpoints"))["step"] == stopped + 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_in_the_trainers_pretraining_stops_it_and_resume_is_exact(world, tmp_path, capsys, monkeypatch, sig):
    command = ["train", "--config", str(world / "fast.toml"), *FUNC, "--pretrain-steps", "6", "--checkpoint-every", "2"]
    assert main([*command, "--out", str(tmp_path / "whole")]) == 0
    real, calls = pretrain_module.reconstruction_loss, []

    def loss_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # arrives during pre-training step 3 of 6
            os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "reconstruction_loss", loss_then_signal)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main([*command, "--out", str(run)]) == 130
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(ERR)]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert f"stopped by signal {sig.name} at pre-training step 3 of 6" in errors[0] and "--resume" in errors[0]
    assert not (run / "checkpoints").exists()  # consistency training never started
    assert load_checkpoint(latest_checkpoint(run / "pretrain" / "checkpoints"))["step"] == 3
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    resumed, whole = (load_checkpoint(latest_checkpoint(r / "checkpoints")) for r in (run, tmp_path / "whole"))
    assert resumed["step"] == whole["step"] == 2
    for weights in ("online", "target", "ema"):
        assert all(np.array_equal(resumed[weights][k], whole[weights][k]) for k in whole[weights]), weights
