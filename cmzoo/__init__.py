"""cmzoo: consistency models with swappable generator backbones."""

from cmzoo.backbone import BackboneConfig, BackboneSpec, Capabilities, ImageFunction
from cmzoo.errors import BackboneError, CmzooError, ConfigError
from cmzoo.plugins import (
    create_backbone,
    get_backbone,
    hookimpl,
    list_backbones,
    plugin_problems,
    register_plugin,
    reload_plugins,
)

__version__ = "0.1.0"

__all__ = [
    "BackboneConfig",
    "BackboneSpec",
    "Capabilities",
    "BackboneError",
    "CmzooError",
    "ConfigError",
    "ImageFunction",
    "create_backbone",
    "get_backbone",
    "hookimpl",
    "list_backbones",
    "plugin_problems",
    "register_plugin",
    "reload_plugins",
]
