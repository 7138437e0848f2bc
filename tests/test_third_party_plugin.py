"""A separately installed backbone plugin (examples/third_party_backbone) through the public API and
the CLI, the conformance helper on it and on every built-in, and broken installed plugins.

Each package is built and installed by pip (`--no-deps --no-build-isolation`) into a folder of its own
(`--target`) that is put on sys.path for the test, so entry-point discovery runs exactly as after a
`pip install`, while the shared environment — and any test run beside this one — never sees it.
"""

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import cmzoo
from cmzoo.cli import main
from cmzoo.errors import ConfigError
from cmzoo.run import generate, load_run
from cmzoo.testing import check_backbone
from cmzoo.train import train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "third_party_backbone"
BUILTIN = ("dit", "func", "unet", "uvit")


def pip_install(source: Path, workdir: Path) -> Path:
    """Build and install the package at `source` into workdir/site; returns that folder."""
    pytest.importorskip("setuptools", reason="building the example plugin needs setuptools (--no-build-isolation)")
    src, site = workdir / "src", workdir / "site"
    # A copy: the in-tree build must not leave build/ or *.egg-info in the repository.
    shutil.copytree(source, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-input",
           "--disable-pip-version-check", "--target", str(site), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"pip install {source} failed:\n{r.stdout}\n{r.stderr}"
    return site


@contextlib.contextmanager
def installed(site: Path, modules: tuple[str, ...]):
    """The packages in `site` importable and discovered by the registry; forgotten afterwards."""
    # Appended: built-ins (found first in site-packages) keep their names if a plugin repeats one.
    sys.path.append(str(site))
    importlib.invalidate_caches()
    cmzoo.reload_plugins()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.split(".")[0] in modules]:
            del sys.modules[name]
        importlib.invalidate_caches()
        cmzoo.reload_plugins()


@pytest.fixture(scope="module")
def convnext_site(tmp_path_factory):
    site = pip_install(EXAMPLE, tmp_path_factory.mktemp("convnext"))
    with installed(site, ("cmzoo_convnext",)):
        yield site
    assert "convnext" not in {s.name for s in cmzoo.list_backbones()}


@pytest.fixture
def tiny_npz(tmp_path) -> str:
    """8 random 32-px RGB images with labels 0/1, as `--data` takes them."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, images=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), labels=np.arange(8) % 2)
    return str(path)


# ---- the example plugin ---------------------------------------------------------------------------


def test_discovered_by_entry_point(convnext_site):
    spec = cmzoo.get_backbone("convnext")
    assert spec.plugin == "convnext" and {"tiny", "paper"} <= set(spec.presets)
    assert spec.capabilities.names() == ["class_conditional", "zero_init_output"]
    assert {s.name for s in cmzoo.list_backbones()} >= {"convnext", *BUILTIN}
    assert not cmzoo.plugin_problems()


def test_cmzoo_backbones_lists_it(convnext_site, capsys):
    assert main(["backbones"]) == 0
    assert "convnext" in capsys.readouterr().out
    # And from a fresh process, as a user would run it after `pip install`.
    env = {**os.environ, "PYTHONPATH": str(convnext_site), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "cmzoo", "backbones"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "convnext" in r.stdout and "problem" not in r.stdout


def test_create_backbone_presets_and_overrides(convnext_site):
    net = cmzoo.create_backbone("convnext", preset="tiny", resolution=32)
    assert 1e5 < sum(p.numel() for p in net.parameters()) < 1e6
    wider = cmzoo.create_backbone("convnext", preset="tiny", resolution=64, dim=96, depth=2)
    assert wider(torch.randn(1, 3, 64, 64), torch.zeros(1)).shape == (1, 3, 64, 64)
    with torch.device("meta"):
        paper = cmzoo.create_backbone("convnext", preset="paper", resolution=32)
    assert 100e6 < sum(p.numel() for p in paper.parameters()) < 115e6


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(kernel_size=4), "backbone 'convnext': field 'kernel_size': .*kernel_size 4 is even"),
        (dict(width=3), "backbone 'convnext': field 'width': unknown field"),
        (dict(depth=0), "backbone 'convnext': field 'depth': .*greater than or equal to 1"),
        (dict(preset="huge"), "backbone 'convnext' has no preset 'huge'; choose one of \\['paper', 'tiny'\\]"),
        (dict(resolution=31), "backbone 'convnext': resolution 31 is not divisible by patch_size 2"),
    ],
)
def test_config_errors_name_the_backbone_and_field(convnext_site, overrides, message):
    with pytest.raises(ConfigError, match=message):
        cmzoo.create_backbone("convnext", **overrides)


@pytest.mark.parametrize("name", [*BUILTIN, "convnext"])
def test_conformance(convnext_site, name):
    check_backbone(name)


def test_trains_and_samples_through_the_api(convnext_site, tiny_npz, tmp_path):
    run_dir = train(backbone="convnext", data=tiny_npz, steps=2, batch_size=4, out=str(tmp_path / "run"),
                    grid_size=4).directory
    assert (run_dir / "checkpoints" / "step_00000002.safetensors").is_file()
    run = load_run(run_dir)
    assert run.spec.plugin == "convnext" and run.step == 2
    images, functions = generate(run, n=3, steps=2, seed=0)
    assert images[(32, 32)].shape == (3, 3, 32, 32) and functions is None
    assert torch.isfinite(images[(32, 32)]).all()


def test_trains_class_conditional_through_the_cli(convnext_site, tiny_npz, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "--backbone", "convnext", "--data", tiny_npz, "--class-conditional", "--steps", "2",
            "--batch-size", "4", "--set", "depth=2", "--out", out]
    assert main(argv) == 0, capsys.readouterr().err
    assert main(["sample", "--run", out, "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert load_run(out).num_classes == 2


def test_cli_config_error_is_one_line(convnext_site, tiny_npz, tmp_path, capsys):
    argv = ["train", "--backbone", "convnext", "--data", tiny_npz, "--set", "kernel_size=6", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "backbone 'convnext': field 'kernel_size'" in err, err


# ---- broken installed plugins ---------------------------------------------------------------------

BROKEN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "cmzoo-broken-example"
version = "0.0.1"

[project.entry-points.cmzoo]
broken-raises = "cmzoo_broken.raises"
broken-duplicate = "cmzoo_broken.duplicate"
broken-config = "cmzoo_broken.bad_preset"
broken-import = "cmzoo_broken.missing_module"

[tool.setuptools]
packages = ["cmzoo_broken"]
"""

BROKEN_MODULES = {
    "__init__.py": """
        import torch
        from cmzoo import BackboneConfig, BackboneSpec

        class Config(BackboneConfig):
            width: int = 4

        def spec(name, presets=None):
            presets = presets or {"tiny": {}, "paper": {}}
            return BackboneSpec(name, Config, presets, lambda c, r, ch, n: torch.nn.Identity())
        """,
    "raises.py": """
        from cmzoo import hookimpl

        @hookimpl
        def cmzoo_register_backbones():
            raise RuntimeError("the plugin's own bug")
        """,
    "duplicate.py": """
        from cmzoo import hookimpl
        from cmzoo_broken import spec

        @hookimpl
        def cmzoo_register_backbones():
            return [spec("unet"), spec("broken-but-fine")]
        """,
    "bad_preset.py": """
        from cmzoo import hookimpl
        from cmzoo_broken import spec

        @hookimpl
        def cmzoo_register_backbones():
            return [spec("badly-configured", {"tiny": {"width": "wide"}, "paper": {}})]
        """,
}


@pytest.fixture
def broken_site(tmp_path):
    source = tmp_path / "broken"
    (source / "cmzoo_broken").mkdir(parents=True)
    (source / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    for name, text in BROKEN_MODULES.items():
        (source / "cmzoo_broken" / name).write_text(textwrap.dedent(text))
    site = pip_install(source, tmp_path / "install")
    with installed(site, ("cmzoo_broken",)):
        yield site


def test_broken_installed_plugins_are_named_and_spare_the_others(broken_site, capsys):
    problems = "\n".join(cmzoo.plugin_problems())
    bug = 'RuntimeError("the plugin\'s own bug")'
    assert f"plugin 'broken-raises' raised in cmzoo_register_backbones: {bug}" in problems
    assert "plugin 'broken-duplicate' declares backbone 'unet', already provided by plugin 'unet'" in problems
    assert "plugin 'broken-config': backbone 'badly-configured' has invalid preset(s) ['tiny']" in problems
    assert "plugin 'broken-import' (cmzoo_broken.missing_module) failed to load" in problems
    assert len(cmzoo.plugin_problems()) == 4 and all("\n" not in p for p in cmzoo.plugin_problems())

    names = {s.name for s in cmzoo.list_backbones()}
    assert set(BUILTIN) <= names and "broken-but-fine" in names and "badly-configured" not in names
    assert cmzoo.get_backbone("unet").plugin == "unet"  # the built-in keeps its name
    assert cmzoo.create_backbone("dit")(torch.zeros(1, 3, 32, 32), torch.zeros(1)).shape == (1, 3, 32, 32)

    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert all(f"plugin '{p}'" in out for p in ("broken-raises", "broken-duplicate", "broken-config", "broken-import"))
