"""Zero-shot editing (CM Algorithm 4) and noise interpolation: the formulas, the Python API, the CLI."""

import pytest
import torch

import cmzoo
from cmzoo.engine.editing import (
    INPAINTING,
    edit_at_sizes,
    edit_sample,
    impose,
    known_part,
    patch_mean_basis,
    slerp,
    slerp_frames,
    superres_mask,
    superres_transform,
)
from cmzoo.engine.parameterization import SIGMA_MAX, SIGMA_MIN, ConsistencyFunction

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
    out = edit_sample(f, reference, mask, SIGMAS, generator=torch.Generator().manual_seed(5))
    keep = (mask == 0).expand_as(reference)
    assert torch.equal(out[keep], reference[keep])  # exactly, after the last imposition
    assert out[~keep].min() > 1.5  # the generated pixels are f's, unclamped
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
    out = edit_sample(f, reference, superres_mask(4), SIGMAS, superres_transform(4), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(patch_means(out, 4), low, atol=1e-6, rtol=0)
    assert (out - reference).abs().amax() > 0.1  # ...while the pixels inside each patch are generated


def test_one_step_edit_is_f_of_the_noisy_known_part():
    reference, mask = inpainting_case()
    f = ConsistencyFunction(ConstantNet(torch.rand(1, 3, 8, 8)))
    out = edit_sample(f, reference, mask, [SIGMA_MAX], generator=torch.Generator().manual_seed(1))
    x = known_part(reference, mask) + SIGMA_MAX * torch.randn(reference.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, impose(reference, f(x, torch.full((2,), SIGMA_MAX)), mask))


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
        pixels = edit_sample(f, reference, mask, sigmas, transform, generator=torch.Generator().manual_seed(2))
        images, functions = edit_at_sizes(f, reference, mask, sigmas, [(16, 16), (32, 32), (24, 8)], transform,
                                          generator=torch.Generator().manual_seed(2))
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
