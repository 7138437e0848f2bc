"""The plugin's own tests: `pip install -e . && pytest tests` in examples/third_party_recipe."""

import cmzoo
from cmzoo.testing import check_recipe
from cmzoo_halfgap import cmzoo_register_recipes


def test_recipe_conforms():
    check_recipe(cmzoo_register_recipes()[0])


def test_installed_and_conforms():
    assert cmzoo.get_recipe("half-gap").plugin == "half-gap"
    assert not cmzoo.plugin_problems()
    check_recipe("half-gap")
