"""The plugin registry, the public lookup API, and every installed backbone against the contract."""

import typing

import pytest
import torch

import cmzoo
from cmzoo import BackboneConfig, BackboneSpec, Capabilities, hookimpl
from cmzoo.errors import BackboneError, ConfigError
from cmzoo.registry import Registry
from cmzoo.testing import check_backbone

BUILTIN = {"dit", "func", "unet", "uvit"}


def test_builtin_backbones_are_registered_by_entry_point():
    specs = {s.name: s for s in cmzoo.list_backbones()}
    assert BUILTIN <= set(specs)
    assert all(specs[n].plugin == n for n in BUILTIN)
    assert not cmzoo.plugin_problems()
    for name in BUILTIN:
        assert {"tiny", "paper"} <= set(specs[name].presets)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_backbone_conforms_to_the_contract(name):
    check_backbone(name)


def test_dit_paper_preset_parameter_count():
    for res, ref in ((32, 161.5e6), (64, 161.5e6), (128, 161.7e6)):
        with torch.device("meta"):
            net = cmzoo.create_backbone("dit", preset="paper", resolution=res)
        assert abs(sum(p.numel() for p in net.parameters()) / ref - 1) < 0.03


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(name="nope"), BackboneError, "unknown backbone 'nope'; installed backbones: .*dit"),
        (dict(name="dit", preset="huge"), ConfigError, "no preset 'huge'; choose one of"),
        (dict(name="dit", bogus=1), ConfigError, "field 'bogus': unknown field"),
        (dict(name="dit", dim="wide"), ConfigError, "field 'dim'"),
        (dict(name="dit", resolution=30), ConfigError, "not divisible by patch_size 4"),
    ],
)
def test_lookup_errors_name_the_thing(kwargs, error, message):
    with pytest.raises(error, match=message):
        cmzoo.create_backbone(kwargs.pop("name"), **kwargs)


class _Cfg(BackboneConfig):
    width: int = 4


def _spec(name: str, presets=None) -> BackboneSpec:
    return BackboneSpec(name=name, config_model=_Cfg, presets=presets or {"tiny": {}, "paper": {}},
                        build=lambda c, r, ch, n: torch.nn.Identity(), capabilities=Capabilities())


class Good:
    @hookimpl
    def cmzoo_register_backbones(self):
        return [_spec("extra")]


class Raises:
    @hookimpl
    def cmzoo_register_backbones(self):
        raise RuntimeError("boom")


class Duplicate:
    @hookimpl
    def cmzoo_register_backbones(self):
        return [_spec("extra")]


class BadPreset:
    @hookimpl
    def cmzoo_register_backbones(self):
        return [_spec("broken", {"tiny": {"width": "x"}})]


def test_faulty_plugins_are_reported_and_do_not_stop_the_others():
    reg = Registry()
    for plugin, name in ((Good(), "good"), (Raises(), "raiser"), (Duplicate(), "dup"), (BadPreset(), "bad")):
        reg.register(plugin, name)
    assert set(reg.specs) == {"extra"} and reg.specs["extra"].plugin == "good"
    problems = "\n".join(reg.problems)
    assert "plugin 'raiser' raised in cmzoo_register_backbones: RuntimeError('boom')" in problems
    assert "plugin 'dup' declares backbone 'extra', already provided by plugin 'good'" in problems
    assert "plugin 'bad': backbone 'broken' has invalid preset(s) ['tiny']" in problems


def test_in_process_plugin_through_the_public_api():
    cmzoo.register_plugin(Good(), "test-good")
    try:
        assert "extra" in {s.name for s in cmzoo.list_backbones()}
        assert isinstance(cmzoo.create_backbone("extra"), torch.nn.Identity)
    finally:
        cmzoo.reload_plugins()
    assert "extra" not in {s.name for s in cmzoo.list_backbones()}


def test_capability_error_names_backbones_that_have_it():
    from cmzoo.registry import require

    with pytest.raises(BackboneError, match="lacks; use a backbone with it: func"):
        require("function_output", cmzoo.get_backbone("dit"), "sampling at 64x64")


@pytest.mark.parametrize("backbone", ["dit", "uvit", "func"])
def test_transformer_backbones_need_heads_that_divide_the_width(backbone):
    with pytest.raises(ConfigError, match=f"backbone '{backbone}': .*dim 130 is not divisible by num_heads 4; choose a divisor"):
        cmzoo.get_backbone(backbone).make_config("tiny", dim=130)


def _is_number(annotation) -> bool:
    """int, float, a tuple of them, or one of those or None."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return any(a in (int, float) or typing.get_origin(a) is tuple for a in args)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_preset_shows_all_its_numbers(name):
    spec = cmzoo.get_backbone(name)
    numbers = {f for f, info in spec.config_model.model_fields.items() if _is_number(info.annotation)}
    for preset, values in spec.presets.items():
        assert numbers <= set(values), f"{name} preset {preset!r} leaves {sorted(numbers - set(values))} to the defaults"
