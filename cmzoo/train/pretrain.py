"""Reconstruction pre-training (paper §3.4, eq. 10): learn clean image → its image function.

σ = 0 and the feature extraction is skipped: the backbone's ``reconstruct(x_in)`` turns the clean
image into functions, and the loss is the MSE of their render against the image. Works with any
backbone of capability ``pretrain``; it uses nothing but ``reconstruct``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from cmzoo.checkpoint import load_module_state, stored_config
from cmzoo.config import TrainConfig
from cmzoo.data import ImageDataset, from_uint8, load_dataset, native_resolution, resize_square
from cmzoo.device import resolve_device, to_device
from cmzoo.engine.parameterization import c_in
from cmzoo.errors import CheckpointError, ConfigError, DataError
from cmzoo.registry import build_backbone, get_backbone, require
from cmzoo.rundir import RESUME_FIX, RunDir, check_same_network, checkpoint_state
from cmzoo.progress import progress_bar
from cmzoo.train.optim import lr_factor
from cmzoo.train.signals import StopSignals


def reconstruct(module: nn.Module, x: torch.Tensor):
    """The image functions of clean images x (B, C, H, W) in [-1, 1]: ``module.reconstruct(c_in(0)·x)``.

    The input is scaled as the network input at σ = 0, so the patch tokens seen here have the same
    statistics (unit variance) as c_in(σ)·x in consistency training.
    """
    return module.reconstruct(c_in(x.new_zeros(())) * x)


def reconstruction_loss(
    module: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, coords_noise: bool = True
) -> torch.Tensor:
    """L_rec = MSE(M_{G_θ(x, σ=0)}({c}), x) (paper eq. 10); variational coordinates in training mode
    unless `coords_noise` is off (then the loss is taken at the pixel centres only).

    With `target`, the same images at a higher resolution R, the function of x is compared with the
    target at H·W random pixel centres of its R×R grid instead (supervision above the input's size,
    as local implicit image functions, at the cost of an H×W render).
    """
    fn = reconstruct(module, x)
    jitter = coords_noise and module.training
    if target is None:
        return F.mse_loss(fn.render(x.shape[-2], x.shape[-1], coords_noise=jitter), x)
    (batch, channels), (height, width) = target.shape[:2], target.shape[-2:]
    pixels = random_pixels(batch, height, width, x.shape[-2] * x.shape[-1], device=target.device)
    colours = fn.render_pixels(height, width, pixels, coords_noise=jitter)
    return F.mse_loss(colours, target.flatten(2).gather(2, pixels.unsqueeze(1).expand(-1, channels, -1)))


def random_pixels(
    batch: int, height: int, width: int, n: int, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """n distinct random row-major pixel indices of an H×W grid for each of `batch` images: (B, n)."""
    return torch.rand(batch, height * width, generator=generator).argsort(dim=1)[:, :n].to(device)


def psnr_of_mse(mse: float) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2) from their MSE: 10·log10(4 / MSE)."""
    return 10 * math.log10(4 / mse)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2): 10·log10(4 / MSE), shape (B,)."""
    mse = (a.float() - b.float()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(4.0 / mse)


@torch.no_grad()
def held_out_psnr(module: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None,
                  batch_size: int = 64) -> dict[str, float]:
    """Mean PSNR of the clamped reconstructions of `images`: {"psnr": at their size} and, with
    `targets` (the same images at a higher resolution R), {"psnr_R": the render at R vs the targets}."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    scores: dict[str, list[torch.Tensor]] = {}
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].to(device)
        fn = reconstruct(module, x)
        pairs = [("psnr", x)]  # (score name, the truth its render is compared with)
        if targets is not None:
            pairs.append((f"psnr_{targets.shape[-1]}", targets[i : i + batch_size].to(device)))
        for key, truth in pairs:
            scores.setdefault(key, []).append(psnr(fn.render(*truth.shape[-2:]).clamp(-1, 1), truth))
    module.train(was_training)
    return {key: torch.cat(v).mean().item() for key, v in scores.items()}


class ReconstructionTraining:
    """Reconstruction pre-training one Adam step at a time (paper: lr 1e-4) on `images`: (N, C, H, W) in
    [-1, 1], or a data set, whose uint8 images are converted a batch at a time (all of CelebA-64 in
    float32 is ~10 GB); with the state a checkpoint needs to continue it exactly: the step, Adam's moments, the
    epoch order, the data generator and torch's RNG (coordinate jitter, dropout).

    `targets` (N, C, R, R), the same images at a higher resolution, supervise the functions at R (see
    :func:`reconstruction_loss`); `coords_noise` off trains at the pixel centres only, without the
    paper's variational coordinates (an ablation); `decay` shapes the rate as :func:`lr_factor`.
    Batches are drawn in epochs (a fresh permutation from `generator` each pass).
    """

    def __init__(
        self, module: nn.Module, images: torch.Tensor | ImageDataset, steps: int, lr: float = 1e-4, batch_size: int = 32,
        generator: torch.Generator | None = None, targets: torch.Tensor | None = None, coords_noise: bool = True,
        decay: float = 0.0,
    ) -> None:
        self.module, self.images, self.targets = module, images, targets
        self.steps, self.lr, self.decay, self.coords_noise = steps, lr, decay, coords_noise
        self.batch_size = min(batch_size, len(images))
        self.generator = generator
        self.device = next(module.parameters()).device
        self.optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
        self.order, self.position, self.step = torch.randperm(len(images), generator=generator), 0, 0

    def train_step(self) -> float:
        """One step on the next batch of the epoch; returns its loss. The module is left in training mode."""
        n = len(self.images)
        if self.position + self.batch_size > n:
            self.order, self.position = torch.randperm(n, generator=self.generator), 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor(self.step, self.steps, self.decay)
        self.module.train()
        target = self.targets[index].to(self.device) if self.targets is not None else None
        if isinstance(self.images, ImageDataset):
            x = from_uint8(to_device(self.images.uint8(index), self.device))
        else:
            x = self.images[index].to(self.device)
        loss = reconstruction_loss(self.module, x, target, self.coords_noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def state_dict(self) -> dict[str, Any]:
        """Everything but the module's weights that the next steps depend on."""
        state = {"step": self.step, "position": self.position, "order": self.order,
                 "optimizer": self.optimizer.state_dict(), "torch": torch.get_rng_state()}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.position, self.order = int(state["step"]), int(state["position"]), state["order"]
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch"])
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])


def pretrain_steps(
    module: nn.Module,
    images: torch.Tensor | ImageDataset,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
    targets: torch.Tensor | None = None,
    coords_noise: bool = True,
    decay: float = 0.0,
) -> list[float]:
    """Run `steps` steps of :class:`ReconstructionTraining` (its arguments); `on_step(step, loss)` after
    each. Returns the loss of every step."""
    training = ReconstructionTraining(module, images, steps, lr, batch_size, generator, targets, coords_noise, decay)
    losses = []
    while training.step < steps:
        losses.append(training.train_step())
        if on_step is not None:
            on_step(training.step, losses[-1])
    return losses


def run_reconstruction(
    training: ReconstructionTraining,
    on_step: Callable[[int, float], None],
    save: Callable[[], Path],
    checkpoint_every: int,
    signals: StopSignals,
    resume_command: str,
    agree: Callable[[bool], bool] = bool,
) -> None:
    """Step `training` to its end: `on_step(step, loss)` after each step, and a checkpoint (`save`) every
    `checkpoint_every` steps (0: none between) and at the end. A stop asked by SIGINT/SIGTERM (`agree`:
    the decision of every DDP rank) saves a checkpoint and raises TrainingInterrupted naming
    `resume_command`."""
    while training.step < training.steps:
        loss = training.train_step()
        on_step(training.step, loss)
        if agree(signals.asked):
            where = f"pre-training step {training.step} of {training.steps}"
            raise signals.interrupted(where, save(), resume_command)
        if training.step == training.steps or (checkpoint_every and training.step % checkpoint_every == 0):
            save()


def pretrain(config: TrainConfig, console: Console | None = None, resume: bool = False) -> Path:
    """Reconstruction pre-training of `config.backbone` (capability ``pretrain``); returns the run dir.

    The last `holdout` images are never trained on; their PSNR is logged every `sample_every` steps
    and at the end. With `render_resolution` R the data is loaded at R, the network sees it resized to
    `resolution`, and the functions are supervised at R. The run directory has the layout of a
    training run (config.json, metrics.jsonl, checkpoints with the weights as ``online``), so
    ``cmzoo train --init-from DIR`` starts consistency training from it. Checkpoints are written every
    `checkpoint_every` steps, at the end and on SIGINT/SIGTERM; `resume` continues from the newest.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        raise ConfigError(f"cmzoo pretrain runs in one process, but torchrun started {world_size}: each would "
                          "pre-train alone into the same run directory; start it without torchrun")
    console = console or Console(stderr=True)
    run_dir = RunDir(config.out)
    if resume:
        path, state = pretraining_checkpoint(run_dir, lambda text: console.print(f"[yellow]note:[/] {text}"))
    spec = get_backbone(config.backbone)
    require("pretrain", spec, "reconstruction pre-training")
    backbone_config = spec.make_config(config.preset, **config.backbone_overrides)  # before the data is read
    if not resume:
        run_dir.refuse_existing()
    lr = config.lr or 1e-4  # paper App. A.2: Adam, lr 1e-4
    sample_every = 200 if config.sample_every is None else config.sample_every
    batch_size = config.batch_size or 32
    images, targets, name = pretraining_images(config)
    holdout = config.holdout if config.holdout is not None else min(256, len(images) // 10)
    if holdout >= len(images):
        raise ConfigError(f"holdout {holdout} leaves no training images out of {len(images)}; hold out fewer")
    train, held = images[: len(images) - holdout], images[len(images) - holdout :]
    train_targets, held_targets = (None, None) if targets is None else (targets[: len(train)], targets[len(train) :])
    torch.manual_seed(config.seed)
    channels = images.shape[1]
    net = build_backbone(spec, backbone_config, config.resolution, channels)
    net.to(resolve_device(config.device))
    generator = torch.Generator().manual_seed(config.seed)
    training = ReconstructionTraining(net, train, config.steps, lr, batch_size, generator, train_targets,
                                      decay=config.lr_decay)
    saved = config.model_copy(update={"lr": lr, "batch_size": batch_size, "holdout": holdout,
                                      "sample_every": sample_every})
    if resume:
        check_same_network(stored_config(state), saved, f"run {run_dir}", "the resumed config", RESUME_FIX)
        load_module_state(net, state["online"], path)
        training.load_state_dict(state["pretrain"])
    run_dir.write_config(saved)
    above = f", supervised at {config.render_resolution} px" if targets is not None else ""
    decay = f", falling to 0 over the last {config.lr_decay:.0%} of the steps" if config.lr_decay else ""
    resumed = f", resuming at step {training.step}" if training.step else ""
    console.print(f"cmzoo pretrain: {config.backbone}/{config.preset} on {name} at {config.resolution} px{above}, "
                  f"{config.steps} steps, batch {batch_size}, Adam lr {lr}{decay}; {len(train)} images, "
                  f"{holdout} held out{resumed}")

    def save() -> Path:
        state = checkpoint_state(saved, training.step, channels, None, online=net.state_dict(), ema=net.state_dict(),
                                 pretrain=training.state_dict())
        return run_dir.save_checkpoint(state, config.keep_checkpoints)

    bar = progress_bar("pretrain", "mse {task.fields[loss]:.5f}  held-out {task.fields[held]}", console)
    with bar as progress, run_dir.open_log(config.log) as log, StopSignals() as signals:
        for note in log.notes:
            console.print(f"[yellow]note:[/] {note}")
        task = progress.add_task("pretrain", total=config.steps, completed=training.step, loss=float("nan"), held="–")

        def on_step(step: int, loss: float) -> None:
            record = {"step": step, "mse": loss, "psnr": psnr_of_mse(loss),
                      "lr": lr * lr_factor(step - 1, config.steps, config.lr_decay)}  # the rate this step used
            end = step == config.steps
            scored = holdout and (end or (sample_every and step % sample_every == 0))
            if scored:
                scores = held_out_psnr(net, held, held_targets)
                record.update({f"held_out_{k}": v for k, v in scores.items()})
                progress.update(task, held="  ".join(f"{k} {v:.2f} dB" for k, v in scores.items()))
            progress.update(task, completed=step, loss=loss)
            if step % config.log_every == 0 or end or scored:
                log.scalars(record)

        resume_command = f"cmzoo pretrain --resume {run_dir}"
        run_reconstruction(training, on_step, save, config.checkpoint_every, signals, resume_command)
    return run_dir.path


def pretraining_checkpoint(run_dir: RunDir, note: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """The newest valid checkpoint of a pre-training run and its state; a training run's is refused in one line."""
    path, state = run_dir.newest_valid_checkpoint(note)
    if "target" in state:
        raise CheckpointError(f"{run_dir} is a consistency-training run, not a pre-training run; continue it with "
                              f"`cmzoo train --resume {run_dir}`")
    if "pretrain" not in state:
        raise CheckpointError(f"{path} holds no pre-training state to continue from (it was written by an earlier "
                              "cmzoo); start a new pre-training run with another --out")
    return path, state


def pretraining_images(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(inputs at `resolution`, the same images at `render_resolution` or None, the data's name)."""
    high = config.render_resolution
    if high is None or high == config.resolution:
        data = load_dataset(config.data, config.resolution, config.shapes_count, config.seed)
        return data.batch(torch.arange(len(data)))[0], None, data.name
    if high < config.resolution:
        raise ConfigError(f"render_resolution {high} is below the input resolution {config.resolution}; "
                          f"give a larger size (or none)")
    if config.data not in (None, "shapes") and (native := native_resolution(config.data)) < high:
        raise DataError(f"{config.data} holds {native}-px images; render_resolution {high} needs images of at "
                        f"least {high} px")
    data = load_dataset(config.data, high, config.shapes_count, config.seed)
    everything = torch.arange(len(data))
    inputs = ImageDataset(resize_square(data.images, config.resolution)).batch(everything)[0]
    return inputs, data.batch(everything)[0], data.name
