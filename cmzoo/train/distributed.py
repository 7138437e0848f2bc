"""Process groups for DistributedDataParallel under `torchrun`: setup, teardown and the few collectives
the trainer needs. Without `torchrun` (WORLD_SIZE unset or 1) every helper is a cheap no-op."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cmzoo.device import resolve_device
from cmzoo.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 does all the I/O: logs, sample grids, checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, batch_size: int, grad_accum: int) -> list[slice]:
        """This rank's micro-batches of the global batch: its contiguous B/N slice, cut into `grad_accum`."""
        parts = self.world_size * grad_accum
        if batch_size % parts:
            raise ConfigError(
                f"batch_size {batch_size} must be divisible by world size {self.world_size} × grad_accum "
                f"{grad_accum} = {parts}; use a batch_size that is a multiple of {parts}"
            )
        micro = batch_size // parts
        start = self.rank * grad_accum * micro
        return [slice(start + m * micro, start + (m + 1) * micro) for m in range(grad_accum)]

    def mean_and_any(self, value: torch.Tensor, flag: bool) -> tuple[float, bool]:
        """The mean of a scalar over all ranks, and whether `flag` is true on any (e.g. a signal that reached
        only some ranks): every rank gets the same two answers, from one all-reduce."""
        if not self.enabled:
            return float(value), flag
        value = value.detach().float().reshape(())
        t = torch.stack([value, torch.tensor(float(flag), device=value.device)]).to(_collective_device())
        dist.all_reduce(t)
        total, flags = t.tolist()
        return total / self.world_size, flags > 0

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (e.g. a signal that reached only some ranks)."""
        return self.mean_and_any(torch.zeros(()), flag)[1]

    def gather(self, obj: Any) -> list[Any]:
        """`obj` from every rank, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (e.g. after work each rank did alone)."""
        if self.enabled:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: str) -> tuple[Dist, torch.device]:
    """Join the `torchrun` job described by the environment (idempotent); returns this rank and its device.
    NCCL with one GPU per process (cuda:LOCAL_RANK) on CUDA, gloo on the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Dist(), resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = resolve_device(device).type == "cuda"
    if wants_cuda:
        count = torch.cuda.device_count()
        if local_rank >= count:
            started = os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1)
            raise ConfigError(f"torchrun started {started} processes on this node, but {count} GPU(s) are visible: "
                              f"one process per GPU, so use --nproc_per_node={count}")
        torch.cuda.set_device(local_rank)  # one GPU per process: `cuda` means this rank's GPU
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wants_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank), torch_device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: Dist, device: torch.device) -> nn.Module:
    """DDP around `module` when there are several ranks (it broadcasts rank 0's initial weights)."""
    if not ctx.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def no_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """Skip DDP's gradient all-reduce for the micro-batches before the last one of a step."""
    model = getattr(model, "_orig_mod", model)  # under torch.compile
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()
