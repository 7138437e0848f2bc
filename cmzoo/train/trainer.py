"""The consistency-training loop: data → σ pairs → loss → optimizer → target EMA and sample EMA, with
callbacks for progress, metrics and sample grids (metrics.jsonl, and TensorBoard when asked),
checkpoints and signals. Under `torchrun` it is DistributedDataParallel: every rank draws the same
global batch and trains on its slice (distributed.py)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console

import cmzoo.checkpoint as checkpoint
from cmzoo.config import TrainConfig, make_config
from cmzoo.data import ImageDataset, batch_indices, from_uint8, load_dataset
from cmzoo.device import device_rng_state, matmul_mode, resolve_precision, set_device_rng_state, to_device
from cmzoo.engine.distances import make_distance
from cmzoo.engine.ema import ema_update, frozen_copy
from cmzoo.engine.parameterization import ConsistencyFunction
from cmzoo.engine.recipes import SigmaPairs
from cmzoo.engine.sampling import Size
from cmzoo.errors import CheckpointError, DataError, TrainingError
from cmzoo.figures import plot_denoising_distances
from cmzoo.grids import grid_image
from cmzoo.metrics.denoising import denoising_distances
from cmzoo.progress import progress_bar
from cmzoo.registry import build_backbone, check_pairing, get_backbone, get_recipe, require
from cmzoo.run import Run, generate
from cmzoo.rundir import RESUME_FIX, RunDir, RunLog, check_same_network, checkpoint_state, summary_writer
from cmzoo.train import distributed
from cmzoo.train.optim import OPTIMIZERS, lr_factor
from cmzoo.train.pretrain import ReconstructionTraining, psnr_of_mse, run_reconstruction
from cmzoo.train.signals import StopSignals

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Periodic:
    """Work the loop does every `every` steps (0: never); `at_end` also at its last step, where the
    others are done once after the loop; `main_only` on rank 0 alone."""

    every: int
    action: Callable[[], None]
    at_end: bool = False
    main_only: bool = False

    def due(self, step: int, end: int) -> bool:
        return bool(self.every) and (step % self.every == 0 if step < end else self.at_end)


class Trainer:
    """Consistency training of one backbone; `run()` trains to `config.steps` and returns the trained Run."""

    def __init__(self, config: TrainConfig, console: Console | None = None, data: ImageDataset | None = None) -> None:
        cfg, self.notices = config.resolved()
        self.dist, self.device = distributed.setup(cfg.device)
        self.config = cfg = cfg.model_copy(update={"precision": resolve_precision(cfg.precision, self.device)})
        self.dist.shard(cfg.batch_size, cfg.grad_accum)  # fail early when the batch does not split evenly
        self.console = console or Console(stderr=True, quiet=not self.dist.main)
        self.recipe = get_recipe(cfg.recipe)
        self.spec = get_backbone(cfg.backbone)
        check_pairing(self.recipe, self.spec)  # before the data is read
        backbone_config = self.spec.make_config(cfg.preset, **cfg.backbone_overrides)
        self.data = data if data is not None else load_dataset(cfg.data, cfg.resolution, cfg.shapes_count, cfg.seed)
        if self.data.resolution != cfg.resolution:
            raise DataError(f"data set {self.data.name} is {self.data.resolution} px, the run is {cfg.resolution} px")
        self.num_classes = None
        if cfg.class_conditional:
            if self.data.num_classes is None:
                raise DataError(f"class_conditional is set but data set {self.data.name} has no labels")
            self.num_classes = self.data.num_classes
        self.channels = self.data.images.shape[1]
        torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed
        net = build_backbone(self.spec, backbone_config, cfg.resolution, self.channels, self.num_classes)
        if cfg.init_from:  # before the recipe's wrapper, which may add to the network (a second time input)
            RunDir(cfg.init_from).load_weights(net)
        self.online = self.recipe.model(net, self.spec.capabilities.function_output, cfg.boundary_scale)
        self.online = self.online.to(self.device)
        if cfg.pretrain_steps:
            require("pretrain", self.spec, "pretrain_steps > 0 (reconstruction pre-training)")
        self.target = frozen_copy(self.online)
        self.ema = frozen_copy(self.online).eval()  # the target stays in train mode: same dropout as online
        self.model = distributed.wrap(self.online, self.dist, self.device)  # the forward; state via self.online
        self.target_forward: torch.nn.Module = self.target  # the target's forward; its state stays in self.target
        if self.dist.enabled:  # a different dropout stream per rank, as a larger single-process batch has
            torch.manual_seed(cfg.seed + 1_000_003 * self.dist.rank)
        self.optimizer = OPTIMIZERS[cfg.optimizer](self.online.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.distance = make_distance(cfg.distance, tuple(self.data.images.shape[1:]), cfg.lpips_weights)
        if isinstance(self.distance, torch.nn.Module):
            self.distance.to(self.device)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # σ indices and noise, drawn on the CPU
        self.step = 0
        self.bad_steps = 0
        self.run_dir = RunDir(cfg.out)
        if cfg.log == "tensorboard":
            summary_writer()  # on every rank: a missing tensorboard fails before anything is trained
        self.run_log = RunLog()  # records nothing until `run` opens the run's logs (on rank 0)
        self.stop = StopSignals()
        self.pretrain_state: dict[str, Any] | None = None  # set by `resume` when the run stopped in pre-training
        self.stop_requested = False  # a signal reached some rank before this step's all-reduce
        if cfg.compile:
            self.compile()

    def compile(self) -> None:
        """torch.compile the online and target forwards (weights, EMA and checkpoints are unchanged)."""
        self.model = torch.compile(self.model)
        self.target_forward = torch.compile(self.target)

    # ---- one step --------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        cfg, recipe, k = self.config, self.recipe, self.step
        # Every rank draws the whole global batch (examples, σ pairs, noise) from the shared generator
        # and trains on its slice, so N ranks × B/N follow the same trajectory as one process × B.
        indices = batch_indices(k, cfg.batch_size, len(self.data), cfg.seed)
        pairs = recipe.pairs(k, cfg.steps, cfg.batch_size, self.generator)  # a pure function of the step
        noise = torch.randn(cfg.batch_size, *self.data.images.shape[1:], generator=self.generator)
        if recipe.fresh_optimizer(k, cfg.steps):
            self.optimizer.state.clear()  # Adam's moments and step counts start again
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(k, cfg.steps, warmup=cfg.warmup)
        self.online.train()
        self.optimizer.zero_grad(set_to_none=True)
        micro_batches = self.dist.shard(cfg.batch_size, cfg.grad_accum)
        total = torch.zeros((), device=self.device)  # the loss stays on the device: no sync per micro-batch
        for m, part in enumerate(micro_batches):
            x, part_pairs, z, y = self.micro_batch(indices[part], pairs, noise, part)
            with distributed.no_sync(self.model, m < len(micro_batches) - 1), self.autocast():
                loss = recipe.loss(self.model, self.target_forward, x, part_pairs, z, self.distance, y)
            self.scaler.scale(loss / len(micro_batches)).backward()
            total += loss.detach().float()
        # The step's one host sync: skipping a non-finite step needs its loss on the host (RAdam has no
        # on-device skip). Under DDP one all-reduce also carries the stop flag, so all ranks decide alike.
        loss, self.stop_requested = self.dist.mean_and_any(total / len(micro_batches), self.stop.asked)
        if not math.isfinite(loss):
            return self._bad_step(loss, pairs.schedule)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        mu = pairs.target_ema
        # GradScaler skips the optimizer step on inf/NaN gradients and then lowers its scale: the EMAs
        # must skip too, or they would drift towards weights that did not move.
        if scale is None or self.scaler.get_scale() >= scale:
            ema_update(self.target, self.online, mu)
            ema_update(self.ema, self.online, cfg.sample_ema)
        self.step += 1
        return {"loss": loss, **pairs.schedule, "target_ema": mu}

    def micro_batch(self, indices: torch.Tensor, pairs: SigmaPairs, noise: torch.Tensor,
                    part: slice) -> tuple[torch.Tensor, SigmaPairs, torch.Tensor, torch.Tensor | None]:
        """(x, its σ pairs, z, labels) of one micro-batch of this rank on the device: only its own images
        are converted from uint8, after the copy (a quarter of the bytes of float32)."""
        device, labels = self.device, self.data.labels
        x = from_uint8(to_device(self.data.uint8(indices), device))
        on_device = pairs.map(lambda t: to_device(t[part], device))
        y = to_device(labels[indices], device) if labels is not None else None
        return x, on_device, to_device(noise[part], device), y

    def autocast(self) -> torch.autocast:
        dtype = AUTOCAST[self.config.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _bad_step(self, loss: float, schedule: dict[str, float]) -> dict[str, float]:
        """A non-finite loss: skip the update (up to `max_bad_steps` times), else stop with the checkpoints intact."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        if self.bad_steps > self.config.max_bad_steps:
            raise TrainingError(
                f"non-finite loss ({loss}) at step {self.step} (max_bad_steps {self.config.max_bad_steps}); "
                f"the last good checkpoint in {self.run_dir.checkpoints} is kept — lower the learning rate "
                "and resume"
            )
        self.console.print(f"[yellow]note:[/] non-finite loss ({loss}) at step {self.step}: update skipped "
                           f"({self.bad_steps} of max_bad_steps {self.config.max_bad_steps})")
        self.step += 1
        return {"loss": loss, **schedule, "target_ema": float("nan")}

    # ---- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the trajectory depends on. Collective under DDP: every rank's RNG states are gathered."""
        local = {"torch": torch.get_rng_state()}
        cuda = device_rng_state(self.device)
        if cuda is not None:
            local["cuda"] = cuda
        ranks = self.dist.gather(local)
        rng = {"generator": self.generator.get_state(), **ranks[0]}
        if len(ranks) > 1:
            rng["ranks"] = ranks
        return checkpoint_state(
            self.config, self.step, self.channels, self.num_classes, bad_steps=self.bad_steps,
            online=self.online.net.state_dict(), target=self.target.net.state_dict(), ema=self.ema.net.state_dict(),
            optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(), rng=rng,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.net.load_state_dict(state["online"])
        self.target.net.load_state_dict(state["target"])
        self.ema.net.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["rng"]["generator"])
        ranks = state["rng"].get("ranks", [state["rng"]])
        if len(ranks) != self.dist.world_size:
            self.console.print(
                f"[yellow]note:[/] the checkpoint was written by {len(ranks)} process(es), this run has "
                f"{self.dist.world_size}: data, noise and schedules continue exactly, dropout draws do not"
            )
        if self.dist.rank < len(ranks):
            torch.set_rng_state(ranks[self.dist.rank]["torch"])
            if "cuda" in ranks[self.dist.rank]:
                set_device_rng_state(ranks[self.dist.rank]["cuda"], self.device)
        self.step = int(state["step"])
        self.bad_steps = int(state.get("bad_steps", 0))

    def save(self) -> Path:
        """Write a checkpoint of this step (rank 0 writes; every rank takes part and waits for it)."""
        return self.save_state(self.run_dir, self.state_dict())

    def save_state(self, run_dir: RunDir, state: dict[str, Any]) -> Path:
        """Write `state` as a checkpoint in `run_dir` on rank 0, while every rank waits for it."""
        if self.dist.main:
            run_dir.save_checkpoint(state, self.config.keep_checkpoints)
        self.dist.barrier()
        return run_dir.checkpoint_path(state["step"])

    def resume(self) -> None:
        """Continue from the newest valid checkpoint (damaged newer ones are reported and passed over), or,
        in a run stopped during reconstruction pre-training, from its newest pre-training checkpoint."""
        pretraining = self.run_dir.pretrain
        in_pretraining = not self.run_dir.list_checkpoints() and pretraining.list_checkpoints()
        path, state = (pretraining if in_pretraining else self.run_dir).newest_valid_checkpoint(self.note)
        saved = checkpoint.stored_config(state)
        check_same_network(saved, self.config, f"run {self.run_dir}", "the resumed config", RESUME_FIX)
        if in_pretraining:
            self.pretrain_state = state
        elif "target" not in state:
            raise CheckpointError(
                f"{self.run_dir} is a reconstruction pre-training run, not a training run; start training from it "
                f"with `cmzoo train --init-from {self.run_dir} --out NEW_DIR`, or continue it with "
                f"`cmzoo pretrain --resume {self.run_dir}`")
        else:
            self.load_state_dict(state)

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]note:[/] {text}")

    # ---- the loop --------------------------------------------------------------------------------

    def run(self) -> Run:
        """Train to `config.steps` (or `stop_at`); returns what was trained, the sample EMA, as a Run."""
        cfg = self.config
        if self.dist.main:
            self.run_dir.write_config(cfg)
        for notice in self.notices:
            self.note(notice)
        self.console.print(self.start_line())
        if self.dist.main:
            # A resumed run continues after its checkpoint's step: TensorBoard drops later, stale events.
            self.run_log = self.run_dir.open_log(cfg.log, purge_step=self.step + 1 if self.step else None)
            for note in self.run_log.notes:
                self.note(note)
        try:
            with self.stop:
                if self.step == 0 and cfg.pretrain_steps:
                    self.pretrain()
                self._loop()
        finally:
            self.run_log.close()
            self.run_log = RunLog()
        return self.trained_run()

    def trained_run(self) -> Run:
        """The sample EMA at this step, as a Run of this run directory."""
        return Run(self.ema, self.config, self.spec, self.step, self.num_classes, self.channels, self.run_dir.path)

    def start_line(self) -> str:
        """What this run trains and how, for the start of its output."""
        cfg = self.config
        params = sum(p.numel() for p in self.online.parameters())
        world = f" × {self.dist.world_size} processes" if self.dist.enabled else ""
        warmup = f" (warm-up {min(cfg.warmup, cfg.steps // 10)} steps)" if cfg.warmup else ""
        precision = "fp32" if cfg.precision == "fp32" else f"{cfg.precision} autocast"
        if self.device.type == "cuda":  # TF32 exists on NVIDIA GPUs only
            precision += f", {matmul_mode()}"
        lines = [
            f"cmzoo: {cfg.backbone}/{cfg.preset} ({params / 1e6:.2f}M params) on {self.data.name} at {cfg.resolution} px, "
            f"{cfg.steps} steps, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr} β {cfg.betas[0]:g}/{cfg.betas[1]:g}"
            f"{warmup}, {self.device}{world}, {precision}",
            self.recipe.summary(cfg.distance),
        ]
        if cfg.boundary_scale != 1 and isinstance(self.online, ConsistencyFunction):  # a consistency recipe's
            lines.append(f"c_skip, c_out at σ_min + {cfg.boundary_scale:g}(σ − σ_min)")
        if cfg.pretrain_steps and not self.step:
            lines.append(f"reconstruction pre-training first: {cfg.pretrain_steps} steps")
        return "\n       ".join(lines)

    def pretrain(self) -> None:
        """Reconstruction pre-training of the online network (paper §3.4), then θ⁻ and the EMA copy it.
        It checkpoints (in `run_dir.pretrain`) every checkpoint_every steps, at its end and on SIGINT/SIGTERM,
        and a resumed run continues it from there."""
        cfg = self.config
        training = ReconstructionTraining(self.online.net, self.data, cfg.pretrain_steps, cfg.lr, cfg.batch_size,
                                          torch.Generator().manual_seed(cfg.seed))
        if self.pretrain_state is not None:
            self.online.net.load_state_dict(self.pretrain_state["online"])
            training.load_state_dict(self.pretrain_state["pretrain"])

        def save() -> Path:
            state = checkpoint_state(cfg, training.step, self.channels, self.num_classes,
                                     online=self.online.net.state_dict(), pretrain=training.state_dict())
            return self.save_state(self.run_dir.pretrain, state)

        bar = progress_bar("pretrain", "mse {task.fields[loss]:.5f}", self.console)
        with bar as progress:
            task = progress.add_task("pretrain", total=cfg.pretrain_steps, completed=training.step, loss=float("nan"))

            def on_step(step: int, loss: float) -> None:
                progress.update(task, completed=step, loss=loss)
                if step % cfg.log_every == 0 or step == cfg.pretrain_steps:
                    self.log({"pretrain_step": step, "mse": loss, "psnr": psnr_of_mse(loss)})

            run_reconstruction(training, on_step, save, cfg.checkpoint_every, self.stop,
                               f"cmzoo train --resume {self.run_dir}", self.dist.any)
        self.dist.broadcast(self.online)  # every rank pre-trained alike; rank 0's weights make sure
        ema_update(self.target, self.online, 0.0)
        ema_update(self.ema, self.online, 0.0)

    def log(self, record: dict[str, Any]) -> None:
        """Record one step's numbers: metrics.jsonl, and TensorBoard when asked (rank 0 only)."""
        self.run_log.scalars(record)

    def log_grids(self) -> None:
        """Record the sample grids of this step, one per render size (rank 0 only)."""
        self.run_log.images(self.step, sample_grids(self))

    def _loop(self) -> None:
        cfg, main, cuda = self.config, self.dist.main, self.device.type == "cuda"
        end = min(cfg.stop_at or cfg.steps, cfg.steps)  # the curriculum still runs over all K steps
        window: list[float] = []
        start, start_step = time.perf_counter(), self.step
        bar = progress_bar("train", "loss {task.fields[loss]:.4f}  {task.fields[schedule]}  {task.fields[rate]:.1f} it/s",
                           self.console)
        with bar as progress:
            task = progress.add_task("train", total=cfg.steps, completed=self.step, loss=float("nan"), schedule="", rate=0.0)
            if main and cfg.denoise_every and self.step == 0:
                self.log_denoising_distances()

            def log_step() -> None:
                loss = sum(window) / len(window) if window else float("nan")
                lr = self.optimizer.param_groups[0]["lr"]
                memory = {"memory_mib": torch.cuda.max_memory_allocated(self.device) / 2**20} if cuda else {}
                self.log({"step": self.step, **metrics, "loss": loss, "lr": lr, "it_per_s": rate, **memory})
                window.clear()

            periodic = [  # the checkpoint first: a failing grid or log write must not cost it
                Periodic(cfg.checkpoint_every, self.save),  # the last checkpoint follows the loop
                Periodic(cfg.log_every, log_step, at_end=True),
                Periodic(cfg.denoise_every, self.log_denoising_distances, at_end=True, main_only=True),
                Periodic(cfg.sample_every, self.log_grids, main_only=True),  # so do the last grids
            ]
            while self.step < end:
                metrics = self.train_step()
                if math.isfinite(metrics["loss"]):
                    window.append(metrics["loss"])
                rate = (self.step - start_step) / (time.perf_counter() - start)
                progress.update(task, completed=self.step, loss=metrics["loss"], schedule=self.recipe.schedule_text(metrics),
                                rate=rate)
                for work in periodic:
                    if work.due(self.step, end) and (main or not work.main_only):
                        work.action()
                if self.stop_requested:  # decided in train_step, alike on all ranks
                    path = self.save()
                    raise self.stop.interrupted(f"step {self.step}", path, f"cmzoo train --resume {self.run_dir}")
        self.save()
        if main:
            self.log_grids()
        if main and cfg.denoise_every:
            plot_denoising_distances(self.run_dir.read_metrics(), self.run_dir.denoising_plot)

    def log_denoising_distances(self) -> None:
        self.log({"step": self.step, "denoising_distance": self.denoising_distances()})

    def denoising_distances(self) -> dict[str, float]:
        """Total denoising distance of the sample EMA per σ bucket, on a fixed batch (paper §4.1)."""
        n = min(len(self.data), 32)
        x0, labels = self.data.batch(torch.arange(n))
        x0, labels = x0.to(self.device), (labels.to(self.device) if labels is not None else None)
        dist = denoising_distances(self.recipe.denoiser(self.ema), x0, self.config.denoise_sigmas, self.config.seed,
                                   labels)
        return {f"{s:g}": d for s, d in dist.items()}


def grid_sizes(trainer: Trainer) -> list[tuple[int, int]]:
    """The training size; function backbones also render at twice that and at `config.grid_sizes`."""
    res = trainer.config.resolution
    sizes = [(res, res)]
    if trainer.spec.capabilities.function_output:
        sizes += [(2 * res, 2 * res)] + [tuple(s) for s in trainer.config.grid_sizes]
    return list(dict.fromkeys(sizes))


def sample_grids(trainer: Trainer) -> dict[Size, torch.Tensor]:
    """The trainer's one-step samples as uint8 grids, one per render size (see `grid_sizes`)."""
    cfg = trainer.config
    images, _ = generate(trainer.trained_run(), cfg.grid_size, steps=1, seed=cfg.seed + 1, sizes=grid_sizes(trainer))
    return {size: grid_image(batch) for size, batch in images.items()}


def train(config: TrainConfig | None = None, resume: bool = False, console: Console | None = None, **overrides: Any) -> Run:
    """Train a consistency model; returns it (the sample EMA) as a Run, whose `directory` holds the run.
    `overrides` are TrainConfig fields."""
    cfg = make_config(**{**(config.model_dump() if config is not None else {}), **overrides})
    run_dir = RunDir(cfg.out)
    if resume:  # before the network is built: another backbone's fields would fail with a misleading message
        saved = run_dir.read_config().model_dump(mode="json")
        check_same_network(saved, cfg, f"run {cfg.out}", "the resumed config", RESUME_FIX)
    else:
        run_dir.refuse_existing()
    try:
        trainer = Trainer(cfg, console=console)
        if resume:
            trainer.resume()
        return trainer.run()
    finally:
        distributed.teardown()


__all__ = ["Trainer", "train"]
