"""The registry of backbones and recipes: the pluggy hookspecs, entry-point discovery of plugins, and the
lookup API.

Built-in and third-party plugins arrive the same way: a package declares an entry point in the ``cmzoo``
group whose object implements :func:`cmzoo_register_backbones`, :func:`cmzoo_register_recipes`, or
both — one group, so that one package can bring a backbone and the recipe that needs it. cmzoo's own
recipes are registered through the same hook by the registry itself, before any entry point, as
pytest registers its built-in plugins: they live inside the cmzoo package and are the trainer's
defaults. A plugin that fails to import, raises in its hook, returns something else, or repeats a
name already taken is reported by name (see :func:`plugin_problems`) and never stops the others.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import fields, replace
from typing import Any

import pluggy
from torch import nn

from cmzoo.backbone import BackboneConfig, BackboneSpec, Capabilities
from cmzoo.engine.recipes import RECIPES, Recipe
from cmzoo.errors import BackboneError, CmzooError, ConfigError

PROJECT = "cmzoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class BackboneHookSpec:
    @hookspec
    def cmzoo_register_backbones(self) -> list[BackboneSpec]:
        """Return the backbones this plugin provides, as a list of :class:`cmzoo.BackboneSpec`.

        Each spec names the backbone (unique across installed plugins), its pydantic config model
        (subclass of :class:`cmzoo.BackboneConfig`: unknown fields rejected), its presets (at least
        ``tiny`` and ``paper``, each a partial config the model validates), a ``build(config,
        resolution, channels, num_classes)`` returning the F_θ module, and its capabilities.
        """


class RecipeHookSpec:
    @hookspec
    def cmzoo_register_recipes(self) -> list[Recipe]:
        """Return the recipes this plugin provides, as instances of :class:`cmzoo.Recipe` subclasses.

        Each recipe names itself (unique across installed plugins), describes itself in one line, and
        lists in ``requires`` the backbone capabilities it needs; the trainer refuses other backbones.
        """


class BuiltinRecipes:
    """cmzoo's own recipes, registered through the hook as any plugin's."""

    @hookimpl
    def cmzoo_register_recipes(self) -> list[Recipe]:
        return list(RECIPES.values())


class Registry:
    """The loaded plugins, their backbone specs and recipes by name, and the problems met loading them."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(BackboneHookSpec)
        self.manager.add_hookspecs(RecipeHookSpec)
        self.specs: dict[str, BackboneSpec] = {}
        self.recipes: dict[str, Recipe] = {}
        self.problems: list[str] = []

    def load_entry_points(self) -> None:
        self.register(BuiltinRecipes(), PROJECT)
        # pluggy's own loader stops at the first plugin that fails to import: guard each one.
        # cmzoo's own backbones first, so a third-party duplicate cannot displace a built-in.
        eps = sorted(importlib.metadata.entry_points(group=PROJECT), key=lambda ep: _distribution(ep) != PROJECT)
        for ep in eps:
            if self.manager.get_plugin(ep.name) is not None or self.manager.is_blocked(ep.name):
                continue
            try:
                self.register(ep.load(), ep.name)
            except Exception as err:  # a broken third-party package must not break the others
                self.problems.append(f"plugin {ep.name!r} ({ep.value}) failed to load: {err}")
        self.manager.check_pending()

    def register(self, plugin: Any, name: str) -> None:
        """Register a plugin object (module or instance with hookimpls) and collect its specs and recipes."""
        try:
            self.manager.register(plugin, name=name)
        except Exception as err:
            self.problems.append(f"plugin {name!r} could not be registered: {err}")
            return
        for hook, collect in ((self.manager.hook.cmzoo_register_backbones, self._collect_backbones),
                              (self.manager.hook.cmzoo_register_recipes, self._collect_recipes)):
            for impl in hook.get_hookimpls():
                if impl.plugin_name == name:
                    items = self._call(name, hook.name, impl.function)
                    if items is not None:
                        collect(name, items)

    def _call(self, plugin: str, hook_name: str, hook: Any) -> list[Any] | None:
        """What the plugin's hook returns, or None (and a problem) when it raises."""
        try:
            return list(hook())
        except Exception as err:
            self.problems.append(f"plugin {plugin!r} raised in {hook_name}: {err!r}")
            return None

    def _collect_recipes(self, plugin: str, recipes: list[Any]) -> None:
        known = {f.name for f in fields(Capabilities)}
        for recipe in recipes:
            if not isinstance(recipe, Recipe):
                self.problems.append(f"plugin {plugin!r} returned {type(recipe).__name__}, not a Recipe")
            elif recipe.name in self.recipes:
                other = self.recipes[recipe.name].plugin
                self.problems.append(f"plugin {plugin!r} declares recipe {recipe.name!r}, already provided by "
                                     f"plugin {other!r}; kept {other!r}'s")
            elif unknown := [c for c in recipe.requires if c not in known]:
                self.problems.append(f"plugin {plugin!r}: recipe {recipe.name!r} requires unknown capabilities "
                                     f"{unknown} (known: {', '.join(sorted(known))}); skipped")
            else:
                self.recipes[recipe.name] = replace(recipe, plugin=plugin)

    def _collect_backbones(self, plugin: str, specs: list[Any]) -> None:
        for spec in specs:
            if not isinstance(spec, BackboneSpec):
                self.problems.append(f"plugin {plugin!r} returned {type(spec).__name__}, not a BackboneSpec")
                continue
            if spec.name in self.specs:
                other = self.specs[spec.name].plugin
                self.problems.append(
                    f"plugin {plugin!r} declares backbone {spec.name!r}, already provided by plugin "
                    f"{other!r}; kept {other!r}'s"
                )
                continue
            bad_presets = {p: reason for p in spec.presets if (reason := _preset_problem(spec, p))}
            if bad_presets:
                reasons = "; ".join(f"{p}: {r}" for p, r in bad_presets.items())
                self.problems.append(
                    f"plugin {plugin!r}: backbone {spec.name!r} has invalid preset(s) {list(bad_presets)} ({reasons}); skipped"
                )
                continue
            self.specs[spec.name] = replace(spec, plugin=plugin)


def _preset_problem(spec: BackboneSpec, preset: str) -> str | None:
    """Why `preset` does not validate, or None."""
    try:
        spec.make_config(preset)
    except Exception as err:
        return str(err)
    return None


def _distribution(ep: importlib.metadata.EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loading entry points on first use."""
    global _registry
    if _registry is None:
        _registry = Registry()
        _registry.load_entry_points()
    return _registry


def reload_plugins() -> Registry:
    """Forget every loaded plugin and discover the entry points again (after a pip install)."""
    global _registry
    _registry = None
    return registry()


def register_plugin(plugin: Any, name: str) -> None:
    """Register an in-process plugin (a module or object with a ``cmzoo_register_backbones`` or
    ``cmzoo_register_recipes`` hookimpl)."""
    registry().register(plugin, name)


def plugin_problems() -> list[str]:
    """One line per plugin that failed to load, raised, or declared a duplicate or invalid backbone or recipe."""
    return list(registry().problems)


def list_backbones() -> list[BackboneSpec]:
    """The specs of every installed backbone, sorted by name."""
    return [registry().specs[n] for n in sorted(registry().specs)]


def get_backbone(name: str) -> BackboneSpec:
    """The spec of backbone `name`; the error lists the installed ones."""
    specs = registry().specs
    if name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise BackboneError(
            f"unknown backbone {name!r}; installed backbones: {known} (`cmzoo backbones` lists them)"
        )
    return specs[name]


def create_backbone(
    name: str,
    preset: str = "tiny",
    resolution: int = 32,
    channels: int = 3,
    num_classes: int | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build backbone `name` from `preset` plus field `overrides`, for images of `resolution` px."""
    spec = get_backbone(name)
    return build_backbone(spec, spec.make_config(preset, **overrides), resolution, channels, num_classes)


def build_backbone(
    spec: BackboneSpec, config: BackboneConfig, resolution: int, channels: int = 3, num_classes: int | None = None
) -> nn.Module:
    """Build a module from a validated config; plugin failures are reported with the plugin's name."""
    if num_classes is not None and not spec.capabilities.class_conditional:
        raise BackboneError(f"backbone {spec.name!r} is not class-conditional; train it without labels")
    try:
        return spec.build(config, resolution, channels, num_classes)
    except CmzooError:
        raise
    except Exception as err:
        raise BackboneError(f"plugin {spec.plugin!r} failed to build backbone {spec.name!r}: {err}") from err


def require(capability: str, spec: BackboneSpec, doing: str) -> None:
    """Raise a clear error when `spec` lacks `capability`, naming backbones that have it."""
    if getattr(spec.capabilities, capability):
        return
    having = [s.name for s in list_backbones() if getattr(s.capabilities, capability)]
    hint = f"; use a backbone with it: {', '.join(having)}" if having else ""
    raise BackboneError(f"{doing} needs capability {capability!r}, which backbone {spec.name!r} lacks{hint}")


def list_recipes() -> list[Recipe]:
    """Every installed recipe, sorted by name."""
    return [registry().recipes[n] for n in sorted(registry().recipes)]


def get_recipe(name: str) -> Recipe:
    """The recipe `name`; the error lists the installed ones."""
    recipes = registry().recipes
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(sorted(recipes))} "
                          "(`cmzoo recipes` lists them)")
    return recipes[name]


def check_pairing(recipe: Recipe, spec: BackboneSpec) -> None:
    """Refuse a backbone that lacks a capability the recipe requires, in one line naming it."""
    for capability in recipe.requires:
        require(capability, spec, f"recipe {recipe.name!r}")
