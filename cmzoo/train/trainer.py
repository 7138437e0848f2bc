"""The consistency-training loop: data → σ pairs → loss → optimizer → target EMA and sample EMA, with
callbacks for progress, JSONL metrics, sample grids, checkpoints and signals."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from cmzoo.data import ImageDataset, batch_indices, load_dataset
from cmzoo.engine.distances import make_distance
from cmzoo.engine.ema import ema_update, frozen_copy
from cmzoo.engine.loss import consistency_loss
from cmzoo.engine.parameterization import ConsistencyFunction
from cmzoo.engine.recipes import get_recipe
from cmzoo.errors import ConfigError, DataError, TrainingError
from cmzoo.metrics.denoising import denoising_distances
from cmzoo.metrics.plots import plot_denoising_distances
from cmzoo.plugins import build_backbone, get_backbone
from cmzoo.train import checkpoint
from cmzoo.train.config import TrainConfig, make_config
from cmzoo.train.grids import save_sample_grids
from cmzoo.train.progress import progress_bar


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM arrived: a checkpoint was written and the run can be resumed."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return torch.device(name)


class Trainer:
    """Consistency training of one backbone; `run()` trains to `config.steps` and returns the run dir."""

    def __init__(self, config: TrainConfig, console: Console | None = None, data: ImageDataset | None = None) -> None:
        self.config, self.notices = config.resolved()
        cfg = self.config
        self.console = console or Console(stderr=True)
        self.recipe = get_recipe(cfg.recipe)
        self.device = resolve_device(cfg.device)
        self.spec = get_backbone(cfg.backbone)
        backbone_config = self.spec.make_config(cfg.preset, **cfg.backbone_overrides)
        self.data = data if data is not None else load_dataset(cfg.data, cfg.resolution, cfg.shapes_count, cfg.seed)
        if self.data.resolution != cfg.resolution:
            raise DataError(f"data set {self.data.name} is {self.data.resolution} px, the run is {cfg.resolution} px")
        self.num_classes = None
        if cfg.class_conditional:
            if self.data.num_classes is None:
                raise DataError(f"class_conditional is set but data set {self.data.name} has no labels")
            self.num_classes = self.data.num_classes
        torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed
        net = build_backbone(self.spec, backbone_config, cfg.resolution, self.data.images.shape[1], self.num_classes)
        self.online = ConsistencyFunction(net).to(self.device)
        if cfg.init_from:
            checkpoint.load_run_weights(self.online.net, Path(cfg.init_from))
        self.target = frozen_copy(self.online)
        self.ema = frozen_copy(self.online).eval()  # the target stays in train mode: same dropout as online
        self.optimizer = torch.optim.RAdam(self.online.parameters(), lr=cfg.lr)
        self.distance = make_distance(cfg.distance, tuple(self.data.images.shape[1:]), cfg.lpips_weights)
        if isinstance(self.distance, torch.nn.Module):
            self.distance.to(self.device)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # σ indices and noise, drawn on the CPU
        self.step = 0
        self.run_dir = Path(cfg.out)
        self._stop_signal: int | None = None

    # ---- one step --------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        cfg, recipe, k = self.config, self.recipe, self.step
        num_scales = recipe.num_scales(k, cfg.steps)
        sigmas = recipe.sigmas(num_scales)
        x0, labels = self.data.batch(batch_indices(k, cfg.batch_size, len(self.data), cfg.seed))
        i = recipe.sample_indices(sigmas, cfg.batch_size, self.generator)
        noise = torch.randn(x0.shape, generator=self.generator)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        weight = recipe.weight(sigma, sigma_next)
        x0, sigma, sigma_next, noise, weight = (t.to(self.device) for t in (x0, sigma, sigma_next, noise, weight))
        labels = labels.to(self.device) if labels is not None else None
        self.online.train()
        loss = consistency_loss(self.online, self.target, x0, sigma, sigma_next, noise, weight, self.distance, labels)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite loss ({loss.item()}) at step {k}; the last good checkpoint in "
                f"{self.run_dir / 'checkpoints'} is kept — lower the learning rate and resume"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        mu = recipe.target_ema(num_scales)
        ema_update(self.target, self.online, mu)
        ema_update(self.ema, self.online, cfg.sample_ema)
        self.step += 1
        return {"loss": loss.item(), "num_scales": num_scales, "target_ema": mu}

    # ---- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "num_classes": self.num_classes,
            "online": self.online.net.state_dict(),
            "target": self.target.net.state_dict(),
            "ema": self.ema.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "config": self.config.model_dump_json(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.net.load_state_dict(state["online"])
        self.target.net.load_state_dict(state["target"])
        self.ema.net.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])

    def save(self) -> Path:
        return checkpoint.save_checkpoint(
            self.run_dir / "checkpoints", self.step, self.state_dict(), self.config.keep_checkpoints
        )

    def resume(self) -> None:
        """Continue from the newest checkpoint in the run directory."""
        self.load_state_dict(checkpoint.load_checkpoint(checkpoint.latest_checkpoint(self.run_dir / "checkpoints")))

    # ---- the loop --------------------------------------------------------------------------------

    def run(self) -> Path:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
        for notice in self.notices:
            self.console.print(f"[yellow]note:[/] {notice}")
        params = sum(p.numel() for p in self.online.parameters())
        self.console.print(
            f"cmzoo: {cfg.backbone}/{cfg.preset} ({params / 1e6:.2f}M params) on {self.data.name} "
            f"at {cfg.resolution} px, {cfg.steps} steps, batch {cfg.batch_size}, lr {cfg.lr}, {self.device}\n"
            f"       {self.recipe.summary()}"
        )
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.run_dir

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    def _loop(self) -> None:
        cfg = self.config
        window: list[float] = []
        start, start_step = time.perf_counter(), self.step
        bar = progress_bar("train", "loss {task.fields[loss]:.4f}  N {task.fields[n]}  {task.fields[rate]:.1f} it/s",
                           self.console)
        with bar as progress, open(self.run_dir / "metrics.jsonl", "a") as log:
            task = progress.add_task("train", total=cfg.steps, completed=self.step, loss=float("nan"), n=0, rate=0.0)
            if cfg.denoise_every and self.step == 0:
                log.write(json.dumps({"step": 0, "denoising_distance": self.denoising_distances()}) + "\n")
            while self.step < cfg.steps:
                metrics = self.train_step()
                window.append(metrics["loss"])
                rate = (self.step - start_step) / (time.perf_counter() - start)
                progress.update(task, completed=self.step, loss=metrics["loss"], n=metrics["num_scales"], rate=rate)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    record = {"step": self.step, **metrics, "loss": sum(window) / len(window), "it_per_s": rate}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    window.clear()
                if cfg.denoise_every and (self.step % cfg.denoise_every == 0 or self.step == cfg.steps):
                    log.write(json.dumps({"step": self.step, "denoising_distance": self.denoising_distances()}) + "\n")
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < cfg.steps:
                    save_sample_grids(self)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save()
                if self._stop_signal is not None:
                    path = self.save()
                    raise TrainingInterrupted(
                        f"stopped by signal {signal.Signals(self._stop_signal).name} at step {self.step}; "
                        f"checkpoint {path.name} written — continue with `cmzoo train --resume {self.run_dir}`"
                    )
        save_sample_grids(self)
        self.save()
        if cfg.denoise_every:
            plot_denoising_distances(self.run_dir / "metrics.jsonl", self.run_dir / "denoising_distance.png")

    def denoising_distances(self) -> dict[str, float]:
        """Total denoising distance of the sample EMA per σ bucket, on a fixed batch (paper §4.1)."""
        n = min(len(self.data), 32)
        x0, labels = self.data.batch(torch.arange(n))
        x0, labels = x0.to(self.device), (labels.to(self.device) if labels is not None else None)
        dist = denoising_distances(self.ema, x0, self.config.denoise_sigmas, self.config.seed, labels)
        return {f"{s:g}": d for s, d in dist.items()}


def train(config: TrainConfig | None = None, resume: bool = False, console: Console | None = None, **overrides: Any) -> Path:
    """Train a consistency model; returns the run directory. `overrides` are TrainConfig fields."""
    cfg = make_config(**{**(config.model_dump() if config is not None else {}), **overrides})
    trainer = Trainer(cfg, console=console)
    if resume:
        trainer.resume()
    return trainer.run()
