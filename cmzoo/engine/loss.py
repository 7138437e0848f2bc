"""The consistency-training loss (CM eq. 10, iCT eq. 9), one function for every recipe, the EDM
denoiser loss that ECT trains first, and the replay of random draws that two forwards of one loss share."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from cmzoo.engine.distances import Distance
from cmzoo.engine.parameterization import ConsistencyFunction, append_dims


class RandomState:
    """The global RNG states at one moment (CPU, and the device's when it is CUDA): `replay()` draws from
    them again, so that a second forward gets the first one's dropout masks and coordinate noise."""

    def __init__(self, device: torch.device) -> None:
        self.devices = [device] if device.type == "cuda" else []
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Draw from the captured states; fork_rng leaves the global stream where it was before."""
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for d, s in zip(self.devices, self.cuda):
                torch.cuda.set_rng_state(s, d)
            yield


def consistency_loss(
    online: ConsistencyFunction,
    target: ConsistencyFunction,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    noise: torch.Tensor,
    weight: torch.Tensor,
    distance: Distance,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean_b λ_b · d(f_θ(x + σ_{i+1} z, σ_{i+1}), f_θ⁻(x + σ_i z, σ_i)) with one z for both points."""
    x_next = x0 + append_dims(sigma_next, x0.ndim) * noise
    x_cur = x0 + append_dims(sigma, x0.ndim) * noise
    randomness = RandomState(x0.device)
    online_out = online(x_next, sigma_next, labels)
    with randomness.replay(), torch.no_grad():  # the target's dropout masks are the online branch's
        target_out = target(x_cur, sigma, labels)
    return (weight * distance(online_out.float(), target_out.float())).mean()


def denoising_loss(
    online: ConsistencyFunction,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    weight: torch.Tensor,
    distance: Distance,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean_b λ_b · d(f_θ(x + σ z, σ), x): the EDM denoiser loss (EDM eq. 2, 8) on the same f_θ."""
    denoised = online(x0 + append_dims(sigma, x0.ndim) * noise, sigma, labels)
    return (weight * distance(denoised.float(), x0.float())).mean()
