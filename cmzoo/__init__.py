"""cmzoo: consistency models with swappable generator backbones."""

from cmzoo.backbone import BackboneConfig, BackboneSpec, Capabilities, ImageFunction, TransformerConfig
from cmzoo.engine.recipes import Recipe, SigmaPairs
from cmzoo.errors import BackboneError, CmzooError, ConfigError
from cmzoo.registry import (
    create_backbone,
    get_backbone,
    get_recipe,
    hookimpl,
    list_backbones,
    list_recipes,
    plugin_problems,
    register_plugin,
    reload_plugins,
)

__version__ = "0.1.0"

# Loaded on first use: they pull in the run loader, which `import cmzoo` does not need.
_LAZY = {"edit": "cmzoo.editing", "interpolate": "cmzoo.editing"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cmzoo' has no attribute {name!r}")


__all__ = [
    "BackboneConfig",
    "BackboneSpec",
    "Capabilities",
    "BackboneError",
    "CmzooError",
    "ConfigError",
    "ImageFunction",
    "Recipe",
    "SigmaPairs",
    "TransformerConfig",
    "create_backbone",
    "edit",
    "get_backbone",
    "get_recipe",
    "hookimpl",
    "interpolate",
    "list_backbones",
    "list_recipes",
    "plugin_problems",
    "register_plugin",
    "reload_plugins",
]
