"""Reconstruction pre-training (paper §3.4, eq. 10): learn clean image → its image function.

σ = 0 and the feature extraction is skipped: the backbone's ``reconstruct(x_in)`` turns the clean
image into functions, and the loss is the MSE of their render against the image. Works with any
backbone of capability ``pretrain``; it uses nothing but ``reconstruct``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from cmzoo.backbone import require
from cmzoo.data import load_dataset
from cmzoo.engine.parameterization import c_in
from cmzoo.plugins import build_backbone, get_backbone
from cmzoo.progress import progress_bar
from cmzoo.train.checkpoint import save_checkpoint
from cmzoo.train.config import TrainConfig
from cmzoo.train.distributed import resolve_device
from cmzoo.train.tracking import open_run_log


def reconstruct(module: nn.Module, x: torch.Tensor):
    """The image functions of clean images x (B, C, H, W) in [-1, 1]: ``module.reconstruct(c_in(0)·x)``.

    The input is scaled as the network input at σ = 0, so the patch tokens seen here have the same
    statistics (unit variance) as c_in(σ)·x in consistency training.
    """
    return module.reconstruct(c_in(x.new_zeros(())) * x)


def reconstruction_loss(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """L_rec = MSE(M_{G_θ(x, σ=0)}({c}), x) (paper eq. 10); variational coordinates in training mode."""
    rendered = reconstruct(module, x).render(x.shape[-2], x.shape[-1], coords_noise=module.training)
    return F.mse_loss(rendered, x)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2): 10·log10(4 / MSE), shape (B,)."""
    mse = (a.float() - b.float()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(4.0 / mse)


def pretrain_steps(
    module: nn.Module,
    images: torch.Tensor,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Run `steps` Adam steps (paper: lr 1e-4) of reconstruction on `images` (N, C, H, W) in [-1, 1].

    Batches are drawn in epochs (a fresh permutation from `generator` each pass). The module is left
    in training mode. Returns the loss of every step.
    """
    device = next(module.parameters()).device
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    n = images.shape[0]
    batch_size = min(batch_size, n)
    order, position, losses = torch.randperm(n, generator=generator), 0, []
    for _ in range(steps):
        if position + batch_size > n:
            order, position = torch.randperm(n, generator=generator), 0
        batch = images[order[position : position + batch_size]].to(device)
        position += batch_size
        loss = reconstruction_loss(module, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(len(losses), losses[-1])
    return losses


def pretrain(config: TrainConfig, console: Console | None = None) -> Path:
    """Reconstruction pre-training of `config.backbone` (capability ``pretrain``); returns the run dir.

    The run directory has the layout of a training run (config.json, metrics.jsonl, checkpoints with
    the weights as ``online``), so ``cmzoo train --init-from DIR`` starts consistency training from it.
    """
    console = console or Console(stderr=True)
    spec = get_backbone(config.backbone)
    require("pretrain", spec, "reconstruction pre-training")
    lr = config.lr or 1e-4  # paper App. A.2: Adam, lr 1e-4
    batch_size = config.batch_size or 32
    data = load_dataset(config.data, config.resolution, config.shapes_count, config.seed)
    torch.manual_seed(config.seed)
    net = build_backbone(spec, spec.make_config(config.preset, **config.backbone_overrides), config.resolution)
    net.to(resolve_device(config.device))
    images, _ = data.batch(torch.arange(len(data)))
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = config.model_copy(update={"lr": lr, "batch_size": batch_size})
    (run_dir / "config.json").write_text(saved.model_dump_json(indent=2))
    console.print(f"cmzoo pretrain: {config.backbone}/{config.preset} on {data.name} at {config.resolution} px, "
                  f"{config.steps} steps, batch {batch_size}, Adam lr {lr}")
    bar = progress_bar("pretrain", "mse {task.fields[loss]:.5f}", console)
    with bar as progress, open_run_log(run_dir, config.log) as log:
        task = progress.add_task("pretrain", total=config.steps, loss=float("nan"))

        def on_step(step: int, loss: float) -> None:
            progress.update(task, completed=step, loss=loss)
            if step % config.log_every == 0 or step == config.steps:
                log.scalars({"step": step, "mse": loss, "psnr": 10 * math.log10(4 / loss)})

        pretrain_steps(net, images, config.steps, lr, batch_size, torch.Generator().manual_seed(config.seed), on_step)
    state = {"step": config.steps, "num_classes": None, "online": net.state_dict(), "ema": net.state_dict(),
             "config": saved.model_dump_json()}
    save_checkpoint(run_dir / "checkpoints", config.steps, state, config.keep_checkpoints)
    return run_dir
