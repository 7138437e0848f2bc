"""The conformance helpers: a backbone against the contract and its declared capabilities, a recipe
against the recipe contract. Plugin authors run them in their own tests::

    from cmzoo.testing import check_backbone, check_recipe
    def test_my_backbone():
        check_backbone("mine")
    def test_my_recipe():
        check_recipe("mine", backbone="dit")
"""

from __future__ import annotations

import copy
import types
import typing

import torch

from cmzoo.backbone import BackboneSpec, ImageFunction
from cmzoo.engine.distances import l2
from cmzoo.engine.ema import frozen_copy
from cmzoo.engine.loss import consistency_loss
from cmzoo.engine.parameterization import ConsistencyFunction, c_noise
from cmzoo.engine.recipes import Recipe
from cmzoo.registry import build_backbone, check_pairing, get_backbone, get_recipe


def check_backbone(name: str | BackboneSpec, preset: str = "tiny", resolution: int = 32, batch: int = 2) -> None:
    """Assert the module contract, bounds on the config's integer fields and every declared capability; one
    training step must change the weights."""
    spec = name if isinstance(name, BackboneSpec) else get_backbone(name)
    check_config_bounds(spec)
    config = spec.make_config(preset)
    torch.manual_seed(0)
    num_classes = 5 if spec.capabilities.class_conditional else None
    net = build_backbone(spec, config, resolution, 3, num_classes)
    x = torch.randn(batch, 3, resolution, resolution)
    cn = c_noise(torch.full((batch,), 1.0))
    labels = torch.arange(batch) % 5 if num_classes else None

    net.eval()
    with torch.no_grad():
        out = net(x, cn, labels)
    assert out.shape == x.shape, f"{spec.name}: forward returned {tuple(out.shape)}, expected {tuple(x.shape)}"
    assert out.dtype == x.dtype, f"{spec.name}: forward returned {out.dtype}, expected {x.dtype}"
    assert torch.isfinite(out).all(), f"{spec.name}: forward returned non-finite values"
    if spec.capabilities.zero_init_output:
        assert out.abs().max() == 0, f"{spec.name} declares zero_init_output but its untrained output is not 0"
    if spec.capabilities.class_conditional:
        with torch.no_grad():
            assert net(x, cn, None).shape == x.shape, f"{spec.name}: class-conditional forward fails without labels"
    if spec.capabilities.function_output:
        with torch.no_grad():
            fn = net.predict_function(x, cn, labels)
            assert isinstance(fn, ImageFunction), f"{spec.name}: predict_function must return an ImageFunction"
            rendered = fn.render(resolution, resolution)
        torch.testing.assert_close(rendered, out, msg=f"{spec.name}: forward must equal the render at the input size")
    if spec.capabilities.any_resolution:
        with torch.no_grad():
            for h, w in ((resolution * 2, resolution), (7, 5)):
                shape = net.predict_function(x, cn, labels).render(h, w).shape
                assert shape == (batch, 3, h, w), f"{spec.name}: render({h}, {w}) gave {tuple(shape)}"
    if spec.capabilities.pretrain:
        with torch.no_grad():
            shape = net.reconstruct(x.clamp(-1, 1)).render(resolution, resolution).shape
        assert shape == x.shape, f"{spec.name}: reconstruct(x).render gave {tuple(shape)}"
    if spec.capabilities.second_time_input:
        check_second_time_input(spec, copy.deepcopy(net), x, cn, labels)
    check_training_step(spec, net, x, labels)


def check_second_time_input(spec: BackboneSpec, net: torch.nn.Module, x: torch.Tensor, cn: torch.Tensor,
                            labels: torch.Tensor | None) -> None:
    """add_second_time_input() leaves the output as it was; then forward (and predict_function) take c_noise_2."""
    with torch.no_grad():
        before = net(x, cn, labels)
        net.add_second_time_input()
        after = net(x, cn, labels, c_noise_2=cn / 2)
        if spec.capabilities.function_output:
            rendered = net.predict_function(x, cn, labels, c_noise_2=cn / 2).render(*x.shape[-2:])
            torch.testing.assert_close(rendered, after, msg=f"{spec.name}: forward must equal the render")
    torch.testing.assert_close(after, before, msg=f"{spec.name}: the second time input's embedding must start at 0")


def check_config_bounds(spec: BackboneSpec) -> None:
    """Every integer field of the config model declares a lower bound (`Field(…, ge=1)` or `gt=0`), so that
    a value such as depth=-2 is refused when the config is made, not built into a network without blocks."""
    for name, field in spec.config_model.model_fields.items():
        if not _is_integer(field.annotation):
            continue
        bounded = any(getattr(m, "ge", None) is not None or getattr(m, "gt", None) is not None for m in field.metadata)
        assert bounded, (f"{spec.name}: config field {name!r} is an integer without a lower bound; declare one, "
                         f"e.g. {name}: int = Field({field.default!r}, ge=1)")


def _is_integer(annotation: object) -> bool:
    """int, or int | None ("unset" is None); bool is not an integer field."""
    if annotation is int:
        return True
    args = typing.get_args(annotation)
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return union and int in args and all(a in (int, type(None)) for a in args)


def check_training_step(spec: BackboneSpec, net: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> None:
    """One consistency-training step gives a finite loss, gradients, and changed weights."""
    net.train()
    online = ConsistencyFunction(net)
    target = frozen_copy(online)
    before = [p.detach().clone() for p in online.parameters()]
    optimizer = torch.optim.RAdam(online.parameters(), lr=1e-3)
    sigma = torch.full((x.shape[0],), 0.5)
    loss = consistency_loss(online, target, x.clamp(-1, 1), sigma, sigma * 2, torch.randn_like(x),
                            torch.ones_like(sigma), l2, labels)
    assert torch.isfinite(loss), f"{spec.name}: non-finite training loss"
    loss.backward()
    optimizer.step()
    changed = sum(not torch.equal(b, p) for b, p in zip(before, online.parameters()))
    assert changed > 0, f"{spec.name}: a training step changed no parameter"


def check_recipe(recipe: str | Recipe, backbone: str = "dit", steps: int = 4, resolution: int = 16,
                 batch: int = 4) -> None:
    """Assert the recipe contract on a tiny `backbone`: a name and a one-line description, the capabilities it
    requires; finite pairs of the batch's size at the first and last step, with 0 ≤ μ < 1; a finite loss
    whose step changes the weights; finite one- and two-step samples of the data's shape."""
    recipe = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    assert recipe.name and recipe.description and "\n" not in recipe.description, \
        f"recipe {recipe.name!r}: give it a name and a one-line description"
    spec = get_backbone(backbone)
    check_pairing(recipe, spec)
    torch.manual_seed(0)
    function_output = spec.capabilities.function_output
    online = recipe.model(build_backbone(spec, spec.make_config("tiny"), resolution), function_output)
    target = frozen_copy(online)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, resolution, resolution, generator=generator) * 2 - 1
    for k in (0, steps - 1):
        pairs = recipe.pairs(k, steps, batch, generator)
        for name, t in (("sigma", pairs.sigma), ("sigma_next", pairs.sigma_next), ("weight", pairs.weight)):
            assert t.shape == (batch,) and torch.isfinite(t).all(), f"recipe {recipe.name!r}: bad {name} at step {k}"
        assert 0 <= pairs.target_ema < 1, f"recipe {recipe.name!r}: target EMA {pairs.target_ema} outside [0, 1)"
        assert "\n" not in recipe.schedule_text(pairs.schedule), f"recipe {recipe.name!r}: schedule_text is one line"
        before = [p.detach().clone() for p in online.parameters()]
        online.train()
        optimizer.zero_grad()
        loss = recipe.loss(online, target, x, pairs, torch.randn(x.shape, generator=generator), l2, None)
        assert torch.isfinite(loss), f"recipe {recipe.name!r}: non-finite loss at step {k}"
        loss.backward()
        optimizer.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, online.parameters())), \
            f"recipe {recipe.name!r}: a training step changed no parameter"
    assert "\n" not in recipe.summary(), f"recipe {recipe.name!r}: summary is one line"
    online.eval()
    with torch.no_grad():
        for n in (1, 2):
            images, _ = recipe.sample(online, torch.randn(x.shape, generator=generator), recipe.schedule(n),
                                      sizes=[(resolution, resolution)], function_output=function_output)
            image = images[(resolution, resolution)]
            assert image.shape == x.shape and torch.isfinite(image).all(), \
                f"recipe {recipe.name!r}: its {n}-step samples are not finite images of the data's shape"
