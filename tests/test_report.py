"""`cmzoo report`: one self-contained report.html for a tiny run and a tiny bench, every image in it a
PNG that decodes, nothing fetched from the network; anything else is a one-line error."""

import base64
import dataclasses
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from cmzoo.bench import run_bench
from cmzoo.cli import main
from cmzoo.config import make_config
from cmzoo.metrics.evaluate import EvalResult
from cmzoo.train.trainer import train

SCORES = EvalResult(fid=123.456, sfid=150.0, precision=0.25, recall=0.125, kid_mean=0.05, kid_std=0.01,
                    inception_score=None, n_samples=8, n_reference=16, reference_name="shapes@16")


@pytest.fixture
def fixed_scores(monkeypatch):
    """The Inception pass is test_metrics.py's; here every evaluation scores SCORES."""
    monkeypatch.setattr("cmzoo.scoring.evaluate_images", lambda samples, reference, *a, **k: SCORES)
    monkeypatch.setattr("cmzoo.bench.harness.load_inception", lambda: None)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


class Page(HTMLParser):
    """The tags, image sources and alt texts of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags, self.images, self.links = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append((attrs["src"], attrs.get("alt", "")))
        self.links += [v for k, v in attrs.items() if k in ("href", "src") and v]


def check_page(report: Path) -> dict[str, Image.Image]:
    """Every image referenced exists beside the report or is an embedded PNG; no script, no network."""
    page = Page(report.read_text())
    assert "script" not in page.tags and "link" not in page.tags
    assert not [link for link in page.links if link.startswith(("http:", "https:", "//"))]
    images = {}
    for src, alt in page.images:
        if src.startswith("data:"):
            header, _, payload = src.partition(",")
            assert header == "data:image/png;base64", header
            data = base64.b64decode(payload, validate=True)
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            data = (report.parent / src).read_bytes()
        image = Image.open(io.BytesIO(data))
        image.load()
        images[alt] = image
    return images


def test_run_report_shows_curves_evaluations_and_grids_over_steps_and_sizes(tmp_path, fixed_scores):
    from cmzoo.scoring import evaluate_run

    config = make_config(backbone="func", resolution=16, shapes_count=8, batch_size=4, steps=4, pretrain_steps=2,
                         log_every=1, denoise_every=2, sample_every=2, grid_size=4, device="cpu",
                         out=str(tmp_path / "run"))
    trained = train(config, console=Console(file=io.StringIO()))
    evaluate_run(trained, "shapes", n=8, n_reference=16)
    run = trained.directory
    recorded = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert recorded == {"step": 4, "eval": {"1-step_16px": dataclasses.asdict(SCORES)}}

    assert main(["report", str(run)]) == 0
    report = run / "report.html"
    images = check_page(report)
    assert {"step 2, 16×16", "step 2, 32×32", "step 4, 16×16", "step 4, 32×32"} <= set(images)
    assert images["step 4, 32×32"].size == (2 * 33 + 1,) * 2  # 4 samples at 32 px, as the PNG in samples/
    assert {"training curves", "denoising distance"} <= set(images)
    text = report.read_text()
    for shown in ("Evaluation", "<td>4</td><td>1-step_16px</td><td>shapes@16</td><td>8</td><td>16</td><td>123.46</td>",
                  "Config", "pretrain_steps"):
        assert shown in text, shown


def test_bench_report_has_the_tables_the_figures_and_each_backbones_grid(tmp_path, fixed_scores):
    out = tmp_path / "bench"
    result = run_bench(backbones=["dit", "func"], only=["params", "quality"], resolutions=[16], steps=2,
                       quality_batch_size=4, n_eval=8, n_reference=16, device="cpu", out=str(out),
                       console=Console(quiet=True), command="pytest")
    report = out / "report.html"
    assert report in result.files  # written by the bench itself
    images = check_page(report)
    assert {"efficiency", "stability"} <= set(images)
    grids = [alt for alt in images if alt.endswith("after 2 steps")]
    assert [alt.split(":")[0] for alt in grids] == ["dit", "func"]
    text = report.read_text()
    for shown in ("Summary", "params (M) @ 16", "<td>dit</td>", "<td>func</td>", "All measurements", "pytest"):
        assert shown in text, shown
    assert main(["report", str(out), "--out", str(tmp_path / "again.html")]) == 0
    check_page(tmp_path / "again.html")


def test_params_only_bench_report_needs_no_trained_model(tmp_path):
    out = tmp_path / "bench"
    run_bench(backbones=["dit", "func"], only=["params"], preset="paper", resolutions=[32], out=str(out),
              console=Console(quiet=True), command="pytest")
    images = check_page(out / "report.html")
    assert list(images) == ["efficiency"]


def test_a_folder_that_is_neither_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")  # a run needs metrics.jsonl too
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cmzoo: error: {tmp_path} is neither a run directory (config.json and metrics.jsonl, from "
                   "`cmzoo train`) nor a bench results folder (results.json, from `cmzoo bench`)"]
