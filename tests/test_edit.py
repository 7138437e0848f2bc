"""Zero-shot editing (CM Algorithm 4) and noise interpolation: the formulas, the Python API, the CLI."""

import pytest
import torch

import cmzoo
from cmzoo.engine.editing import (
    INPAINTING,
    impose,
    known_part,
    patch_mean_basis,
    slerp,
    slerp_frames,
    superres_mask,
    superres_transform,
)
from cmzoo.engine.parameterization import SIGMA_MAX, SIGMA_MIN, ConsistencyFunction
from cmzoo.engine.sampling import edit_at_sizes, edit_sample
from cmzoo.errors import ConfigError

SIGMAS = [SIGMA_MAX, 10.0, 2.0, 0.5]


class ConstantNet(torch.nn.Module):
    """F ≡ a fixed image, so f(x, σ) = c_skip(σ)·x + c_out(σ)·image."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = image

    def forward(self, x_in, c_noise, labels=None):
        return self.image.expand_as(x_in)


class Recording(ConsistencyFunction):
    """f_θ that keeps every input x it is called with."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__(net)
        self.inputs = []

    def forward(self, x, sigma, labels=None):
        self.inputs.append(x.clone())
        return super().forward(x, sigma, labels)


def patch_means(x: torch.Tensor, patch: int) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(x, patch)


def inpainting_case(size: int = 8):
    reference = torch.rand(2, 3, size, size) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : size // 2 + 2, 1:-2] = 1.0  # generate a band, keep the rest
    return reference, mask


# --- the transforms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_superres_transform_is_orthogonal_with_the_patch_mean_first(patch):
    q = patch_mean_basis(patch)
    torch.testing.assert_close(q.T @ q, torch.eye(patch * patch, dtype=torch.float64))
    torch.testing.assert_close(q[:, 0], torch.full((patch * patch,), 1.0 / patch, dtype=torch.float64))
    a = superres_transform(patch)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    coefficients = a.forward(x)
    assert coefficients.shape == (2, 3, 8 // patch, 8 // patch, patch * patch)
    torch.testing.assert_close(a.inverse(coefficients), x)  # A⁻¹A = I
    torch.testing.assert_close(coefficients.norm(), x.norm())  # norms preserved
    torch.testing.assert_close(coefficients[..., 0], patch * patch_means(x, patch))


def test_impose_keeps_the_known_part_of_the_reference():
    y, mask = inpainting_case()
    x = torch.randn_like(y)
    out = impose(y, x, mask)
    assert torch.equal(out[(mask == 0).expand_as(y)], y[(mask == 0).expand_as(y)])
    assert torch.equal(out[(mask == 1).expand_as(y)], x[(mask == 1).expand_as(y)])
    assert torch.equal(known_part(y, mask), y * (1 - mask))
    a, omega = superres_transform(4), superres_mask(4)
    mixed = impose(y, x, omega, a)
    torch.testing.assert_close(patch_means(mixed, 4), patch_means(y, 4))
    torch.testing.assert_close(mixed - patch_means(mixed, 4).repeat_interleave(4, -1).repeat_interleave(4, -2),
                               x - patch_means(x, 4).repeat_interleave(4, -1).repeat_interleave(4, -2))


# --- Algorithm 4 --------------------------------------------------------------------------------------


def test_known_pixels_are_imposed_after_every_step():
    # f is far from the reference everywhere (10·c_out ≫ 1), so an input whose known pixels are the
    # reference plus that step's noise shows the imposition happened at the step before.
    reference, mask = inpainting_case()
    f = Recording(ConstantNet(torch.full((1, 3, 8, 8), 10.0)))
    out = edit_sample(f, reference, SIGMAS, generator=torch.Generator().manual_seed(5), mask=mask)
    keep = (mask == 0).expand_as(reference)
    assert torch.equal(out[keep], reference[keep])  # exactly, after the last imposition
    assert torch.equal(out[~keep], torch.ones_like(out[~keep]))  # f's pixels, clamped before the imposition
    g = torch.Generator().manual_seed(5)
    torch.testing.assert_close(f.inputs[0], known_part(reference, mask) + SIGMA_MAX * torch.randn(reference.shape, generator=g))
    for tau, x in zip(SIGMAS[1:], f.inputs[1:]):
        noise = (tau**2 - SIGMA_MIN**2) ** 0.5 * torch.randn(reference.shape, generator=g)
        torch.testing.assert_close(x[keep], (reference + noise)[keep])
        torch.testing.assert_close(x[~keep], (1 + noise)[~keep])  # the previous f, clamped before re-noising
    assert len(f.inputs) == len(SIGMAS)


def test_superres_output_has_the_low_res_pixels_as_patch_means():
    low = torch.rand(2, 3, 2, 2) * 2 - 1
    reference = low.repeat_interleave(4, -1).repeat_interleave(4, -2)
    f = ConsistencyFunction(ConstantNet(torch.randn(1, 3, 8, 8)))
    out = edit_sample(f, reference, SIGMAS, generator=torch.Generator().manual_seed(0), mask=superres_mask(4),
                      transform=superres_transform(4))
    torch.testing.assert_close(patch_means(out, 4), low, atol=1e-6, rtol=0)
    assert (out - reference).abs().amax() > 0.1  # ...while the pixels inside each patch are generated


def test_every_superres_step_input_keeps_the_low_res_patch_means():
    # The reference clamps f's image, then imposes the known part: imposing first and clamping after
    # moved the patch means of f's far-out-of-range image (10·c_out ≫ 1) away from the low-res pixels.
    low = torch.rand(2, 3, 2, 2) * 2 - 1
    reference = low.repeat_interleave(4, -1).repeat_interleave(4, -2)
    f = Recording(ConstantNet(torch.full((1, 3, 8, 8), 10.0) + torch.randn(1, 3, 8, 8)))
    edit_sample(f, reference, SIGMAS, generator=torch.Generator().manual_seed(2), mask=superres_mask(4),
                transform=superres_transform(4))
    g = torch.Generator().manual_seed(2)
    torch.randn(reference.shape, generator=g)  # the first step's noise
    for tau, x in zip(SIGMAS[1:], f.inputs[1:]):
        denoised = x - (tau**2 - SIGMA_MIN**2) ** 0.5 * torch.randn(reference.shape, generator=g)
        torch.testing.assert_close(patch_means(denoised, 4), low, atol=1e-6, rtol=0)


def test_one_step_edit_is_f_of_the_noisy_known_part():
    reference, mask = inpainting_case()
    f = ConsistencyFunction(ConstantNet(torch.rand(1, 3, 8, 8)))
    out = edit_sample(f, reference, [SIGMA_MAX], generator=torch.Generator().manual_seed(1), mask=mask)
    x = known_part(reference, mask) + SIGMA_MAX * torch.randn(reference.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, impose(reference, f(x, torch.full((2,), SIGMA_MAX)).clamp(-1, 1), mask))


@pytest.mark.parametrize("task", ["inpaint", "superres"])
@pytest.mark.parametrize("sigmas", [[SIGMA_MAX], SIGMAS])
def test_function_path_is_the_pixel_path_at_the_training_size(task, sigmas, one_thread):
    torch.manual_seed(0)
    f = ConsistencyFunction(cmzoo.create_backbone("func", "tiny", resolution=16)).eval()
    reference, mask = inpainting_case(16)
    transform = INPAINTING
    if task == "superres":
        transform, mask = superres_transform(4), superres_mask(4)
    with torch.no_grad():
        pixels = edit_sample(f, reference, sigmas, generator=torch.Generator().manual_seed(2), mask=mask,
                             transform=transform)
        images, functions = edit_at_sizes(f, reference, sigmas, generator=torch.Generator().manual_seed(2), mask=mask,
                                          sizes=[(16, 16), (32, 32), (24, 8)], transform=transform)
    torch.testing.assert_close(images[(16, 16)], pixels)
    assert images[(32, 32)].shape == (2, 3, 32, 32) and images[(24, 8)].shape == (2, 3, 24, 8)
    assert len(functions) == 2 and torch.isfinite(images[(32, 32)]).all()


# --- interpolation ------------------------------------------------------------------------------------


def test_slerp_ends_at_both_noises_and_keeps_unit_norms():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    assert torch.equal(slerp(z0, z1, 0.0), z0) and torch.equal(slerp(z0, z1, 1.0), z1)
    u0, u1 = z0 / z0.flatten(1).norm(dim=1)[:, None, None, None], z1 / z1.flatten(1).norm(dim=1)[:, None, None, None]
    for t in (0.1, 0.5, 0.9):
        torch.testing.assert_close(slerp(u0, u1, t).flatten(1).norm(dim=1), torch.ones(4))
    mid = slerp(u0, u1, 0.5)  # the midpoint is at equal angles from both ends
    torch.testing.assert_close((mid * u0).flatten(1).sum(1), (mid * u1).flatten(1).sum(1))
    torch.testing.assert_close(slerp(z0, z0, 0.3), z0)  # parallel: no division by sin 0


def test_slerp_frames_are_evenly_spaced_on_the_arc():
    z0, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    frames = slerp_frames(z0, z1, 5)
    angles = torch.atan2(frames[:, 1], frames[:, 0])
    torch.testing.assert_close(angles, torch.linspace(0, torch.pi / 2, 5))
    assert torch.equal(frames[0], z0[0]) and torch.equal(frames[-1], z1[0])


# --- the Python API and the CLI on tiny trained runs -------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-step func and dit runs at 16 px, trained on 4 random images."""
    import numpy as np
    from rich.console import Console

    from cmzoo.train import train

    root = tmp_path_factory.mktemp("runs")
    np.savez(root / "tiny.npz", images=np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for backbone in ("func", "dit"):
        train(backbone=backbone, data=str(root / "tiny.npz"), resolution=16, steps=1, batch_size=2, pretrain_steps=0,
              denoise_every=0, sample_every=0, grid_size=1, out=str(root / backbone), console=Console(quiet=True))
    yield {b: str(root / b) for b in ("func", "dit")}
    torch.set_num_threads(threads)


def save_png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture
def images(tmp_path):
    """A 32 px photo with a 32 px mask (white band = generate), and a 4 px low-resolution image."""
    import numpy as np

    rng = np.random.default_rng(1)
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:20, 4:28] = 255
    return {
        "image": save_png(tmp_path / "photo.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)),
        "mask": save_png(tmp_path / "mask.png", mask),
        "low": save_png(tmp_path / "low.png", rng.integers(64, 192, (4, 4, 3), dtype=np.uint8)),
    }


def test_inpainting_keeps_the_resized_image_outside_the_mask(runs, images, one_thread):
    from cmzoo.data.sources import resize_square
    from cmzoo.data import from_uint8
    from cmzoo.editing import read_image
    from cmzoo.run import load_run

    out = cmzoo.edit(load_run(runs["func"]), images["image"], "inpaint", images["mask"], steps=3, seed=4)
    reference = from_uint8(resize_square(read_image(images["image"]), 16))
    keep = torch.ones(1, 3, 16, 16, dtype=torch.bool)
    keep[..., 4:10, 2:14] = False  # the 32 px band, halved
    assert out.shape == (1, 3, 16, 16)
    assert torch.equal(out[keep], reference[keep])
    assert (out[~keep] - reference[~keep]).abs().mean() > 0.1


def test_mask_grey_levels_are_thresholded_at_one_half(tmp_path):
    import numpy as np

    from cmzoo.editing import inpainting_inputs

    grey = np.array([[0, 127, 128, 255]], dtype=np.uint8).repeat(4, 0)
    photo = save_png(tmp_path / "p.png", np.zeros((4, 4, 3), dtype=np.uint8))
    _, omega = inpainting_inputs(photo, save_png(tmp_path / "m.png", grey), 4)
    assert torch.equal(omega[0, 0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_superres_output_at_the_training_size_has_the_input_as_patch_means(runs, images, one_thread):
    from cmzoo.data import from_uint8
    from cmzoo.editing import read_image
    from cmzoo.run import load_run

    out = cmzoo.edit(load_run(runs["func"]), images["low"], "superres", steps=3)
    # The result is clamped to [-1, 1] like every sample: patch means are exact where nothing was clamped.
    exact = torch.nn.functional.max_pool2d((out.abs() >= 1).float(), 4) == 0
    assert exact.float().mean() > 0.75
    means, low = patch_means(out, 4), from_uint8(read_image(images["low"]))
    torch.testing.assert_close(means[exact], low[exact], atol=1e-5, rtol=0)


@pytest.mark.parametrize("task", ["inpaint", "superres"])
def test_func_edits_at_other_sizes(runs, images, task, one_thread):
    from cmzoo.run import load_run

    image, mask = (images["image"], images["mask"]) if task == "inpaint" else (images["low"], None)
    for size in ((32, 32), (24, 40)):
        out = cmzoo.edit(load_run(runs["func"]), image, task, mask, size=size, steps=2)
        assert out.shape == (1, 3, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize("backbone, size", [("func", (32, 32)), ("dit", None)])
def test_interpolation_ends_at_the_two_seeds_samples(runs, backbone, size, one_thread):
    from cmzoo.run import generate, load_run

    run = load_run(runs[backbone])
    frames = cmzoo.interpolate(run, 3, 7, frames=5, size=size)
    size = size or (16, 16)
    assert frames.shape == (5, 3, *size)
    torch.testing.assert_close(frames[:1], generate(run, 1, seed=3, sizes=[size])[0][size])
    torch.testing.assert_close(frames[-1:], generate(run, 1, seed=7, sizes=[size])[0][size])
    assert (frames[1:] - frames[:-1]).flatten(1).norm(dim=1).min() > 0


def test_cli_edit_and_interpolate_write_pngs(runs, images, tmp_path, one_thread):
    from PIL import Image

    from cmzoo.cli import main

    out = tmp_path / "edit.png"
    assert main(["edit", "--run", runs["func"], "--image", images["image"], "--task", "inpaint", "--mask",
                 images["mask"], "--steps", "2", "--size", "48x32", "--out", str(out)]) == 0
    assert Image.open(out).size == (32, 48)
    assert main(["edit", "--run", runs["dit"], "--image", images["low"], "--task", "superres", "--steps", "80", "2",
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (16, 16)
    strip = tmp_path / "strip.png"
    assert main(["interpolate", "--run", runs["func"], "--seeds", "1", "2", "--frames", "6", "--size", "32",
                 "--out", str(strip)]) == 0
    assert Image.open(strip).size == (6 * 33 + 1, 34)  # six 32 px frames side by side, 1 px padding


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "inpaint", "--image", "{tmp}/nowhere.png", "--mask", "{mask}"], r"image file .*nowhere.png does not exist; give a PNG"),
        (["--task", "inpaint", "--image", "{broken}", "--mask", "{mask}"], r"cannot read image .*broken.png: .*; give a PNG or JPEG file"),
        (["--task", "inpaint", "--image", "{image}"], r"inpainting needs a mask \(--mask M.png\): white where to generate"),
        (["--task", "inpaint", "--image", "{image}", "--mask", "{low}"], r"mask .*low.png is 4×4 px but image .*photo.png is 32×32 px"),
        (["--task", "inpaint", "--image", "{image}", "--mask", "{tmp}/nomask.png"], r"mask file .*nomask.png does not exist"),
        (["--image", "{image}", "--task", "superres"], r"input .*photo.png is 32×32 px; give a square image whose side "
                                                       r"divides the training size 16 \(one of 1, 2, 4, 8\)"),
        (["--image", "{low}", "--task", "superres", "--mask", "{mask}"], r"--mask is for inpainting"),
        (["--task", "inpaint", "--image", "{image}", "--mask", "{mask}", "--size", "big"], r"size 'big' is not N or HxW"),
        (["--task", "inpaint", "--image", "{image}", "--mask", "{mask}", "--steps", "0"], r"--steps must be ≥ 1"),
        (["--task", "inpaint", "--image", "{image}", "--mask", "{mask}", "--size", "32", "--dit"],
         r"editing at 32×32 \(trained at 16×16\) needs capability 'function_output', which backbone 'dit' lacks; "
         r"use a backbone with it: func"),
        (["interpolate", "--seeds", "1", "2", "--frames", "1"], r"--frames must be at least 2"),
        (["interpolate", "--seeds", "1", "2", "--size", "32", "--dit"], r"interpolating at 32×32 .* backbone 'dit' lacks"),
    ],
)
def test_bad_edit_input_is_one_line_and_nonzero(runs, images, tmp_path, capsys, args, message):
    import re

    from cmzoo.cli import main

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    fill = {**images, "tmp": str(tmp_path), "broken": str(tmp_path / "broken.png")}
    command = args[0] if args[0] == "interpolate" else "edit"
    backbone = "dit" if "--dit" in args else "func"
    rest = [a.format(**fill) for a in args if a not in ("interpolate", "--dit")]
    assert main([command, "--run", runs[backbone], *rest, "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cmzoo: error: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "o.png").exists()


def test_unknown_task_is_refused_by_the_parser(runs, images, capsys):
    from cmzoo.cli import main

    assert main(["edit", "--run", runs["func"], "--image", images["image"], "--task", "blur", "--out", "o.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cmzoo: error: "), err
    assert "argument --task: invalid choice: 'blur' (choose from 'inpaint', 'superres')" in err
    with pytest.raises(ConfigError, match="unknown editing task 'blur'; choose one of inpaint, superres"):
        cmzoo.edit(None, images["image"], "blur", images["mask"])
