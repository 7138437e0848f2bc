"""The plugin's own tests: `pip install -e . && pytest tests` in examples/third_party_backbone."""

import torch

import cmzoo
from cmzoo.testing import check_backbone
from cmzoo_convnext import cmzoo_register_backbones


def test_spec_conforms():
    check_backbone(cmzoo_register_backbones()[0])


def test_installed_and_conforms():
    assert cmzoo.get_backbone("convnext").plugin == "convnext"
    assert not cmzoo.plugin_problems()
    check_backbone("convnext")


def test_paper_preset_size():
    with torch.device("meta"):
        net = cmzoo.create_backbone("convnext", preset="paper", resolution=32)
    assert abs(sum(p.numel() for p in net.parameters()) / 107.86e6 - 1) < 0.01
