"""Recipes as plugins: the built-ins through the hook, faulty recipe plugins, `cmzoo recipes`, and a
separately installed recipe package (examples/third_party_recipe) listed and trained from the CLI."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import cmzoo
from cmzoo import hookimpl
from cmzoo.cli import main
from cmzoo.errors import ConfigError
from cmzoo.registry import Registry
from cmzoo.rundir import RunDir
from cmzoo.testing import check_recipe
from test_third_party_plugin import installed, pip_install

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "third_party_recipe"
BUILTIN = {"ct", "ict", "ct-short", "ict-short", "ect", "meanflow", "meanflow-x"}


def test_builtin_recipes_come_through_the_hook():
    recipes = {r.name: r for r in cmzoo.list_recipes()}
    assert BUILTIN <= set(recipes) and all(recipes[n].plugin == "cmzoo" for n in BUILTIN)
    assert all(r.description and "\n" not in r.description for r in recipes.values())
    assert recipes["meanflow"].requires == ("second_time_input",) and recipes["ect"].requires == ()
    assert not cmzoo.plugin_problems()


@pytest.mark.parametrize("name", sorted(BUILTIN - {"meanflow", "meanflow-x"}))  # those run in test_meanflow.py
def test_builtin_recipes_pass_the_conformance_helper(name):
    check_recipe(name)


def test_unknown_recipe_names_the_choices(capsys, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown recipe 'fast'; choose one of ct, ct-short, ect, ict, ict-short, "
                                          r"meanflow, meanflow-x \(`cmzoo recipes` lists them\)"):
        cmzoo.get_recipe("fast")
    assert main(["train", "--recipe", "fast", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown recipe 'fast'; choose one of ct, " in err


def _recipe(name, **fields):
    return replace(cmzoo.get_recipe("ect"), name=name, plugin="", **fields)


class Good:
    @hookimpl
    def cmzoo_register_recipes(self):
        return [_recipe("ect-long", stages=4)]


class Faulty:
    @hookimpl
    def cmzoo_register_recipes(self):
        return [_recipe("ect"), _recipe("needs-wings", requires=("wings",)), "a string"]


class Raises:
    @hookimpl
    def cmzoo_register_recipes(self):
        raise RuntimeError("boom")


def test_faulty_recipe_plugins_are_reported_and_spare_the_others():
    reg = Registry()
    reg.load_entry_points()
    for plugin, name in ((Good(), "good"), (Faulty(), "faulty"), (Raises(), "raiser")):
        reg.register(plugin, name)
    assert reg.recipes["ect-long"].plugin == "good" and reg.recipes["ect"].plugin == "cmzoo"
    assert "needs-wings" not in reg.recipes
    problems = "\n".join(reg.problems)
    assert "plugin 'faulty' declares recipe 'ect', already provided by plugin 'cmzoo'; kept 'cmzoo''s" in problems
    assert "plugin 'faulty': recipe 'needs-wings' requires unknown capabilities ['wings']" in problems
    assert "plugin 'faulty' returned str, not a Recipe" in problems
    assert "plugin 'raiser' raised in cmzoo_register_recipes: RuntimeError('boom')" in problems


def test_cmzoo_recipes_lists_name_plugin_needs_and_description(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BUILTIN) and "second_time_input" in out and "MeanFlow" in out


# ---- the example package, installed from its folder ------------------------------------------------------


@pytest.fixture(scope="module")
def halfgap_site(tmp_path_factory):
    site = pip_install(EXAMPLE, tmp_path_factory.mktemp("halfgap"))
    with installed(site, ("cmzoo_halfgap",)):
        yield site
    assert "half-gap" not in {r.name for r in cmzoo.list_recipes()}


def test_the_installed_example_is_listed_and_conforms(halfgap_site):
    assert cmzoo.get_recipe("half-gap").plugin == "half-gap" and not cmzoo.plugin_problems()
    check_recipe("half-gap")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(halfgap_site), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "cmzoo", "recipes"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "half-gap" in r.stdout and "problem" not in r.stdout


def test_the_installed_example_trains_from_the_cli(halfgap_site, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "half-gap", "--backbone", "dit", "--resolution", "16", "--steps", "2",
            "--batch-size", "4", "--sample-every", "0", "--denoise-every", "0", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert RunDir(out).read_config().recipe == "half-gap"
    assert (out / "checkpoints" / "step_00000002.safetensors").is_file()
