"""What every figure of one benchmark shares, and the protocol of the figures that train.

`Bench`: the config, device, precision and console of every measurement, and how a measurement becomes
a `Record`. The trained figures (quality, convergence) train every backbone on the same data with the
same recipe and batch (`protocol_config`), turn a wall-clock budget into steps from the training step's
own rate (`steps_for_seconds`), and score the Run that training returns (`scored_record`).
"""

from __future__ import annotations

import gc
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console

from cmzoo.backbone import BackboneSpec
from cmzoo.bench.config import BenchConfig
from cmzoo.bench.measure import Timing, time_call
from cmzoo.bench.results import Record
from cmzoo.config import TrainConfig, make_config
from cmzoo.metrics.evaluate import EvalResult
from cmzoo.run import Run
from cmzoo.scoring import evaluate_run
from cmzoo.train.trainer import Trainer


@dataclass
class Bench:
    """The device, precision and protocol shared by every measurement of one benchmark."""

    config: BenchConfig
    device: torch.device
    peak_tflops: float
    console: Console

    def record(self, spec: BackboneSpec, figure: str, resolution: int | str, value: float | None, unit: str,
               **fields: object) -> Record:
        cfg = self.config
        return Record(spec.name, figure, str(resolution), value, unit, cfg.preset, str(self.device), cfg.precision,
                      cfg.compile, **fields)

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def compiled(self, fn: Callable) -> Callable:
        return torch.compile(fn) if self.config.compile else fn

    def time(self, fn: Callable[[], object]) -> Timing:
        return time_call(fn, self.device, self.config.warmup, self.config.repeats)

    def peak_fraction(self, gflop_per_image: float, images_per_second: float) -> float | None:
        return gflop_per_image * images_per_second / (self.peak_tflops * 1e3) if self.peak_tflops else None

    def guarded(self, spec: BackboneSpec, figure: str, resolution: int,
                measure: Callable[[], list[Record]]) -> list[Record]:
        """Run one measurement; running out of memory becomes a failed row, and the benchmark goes on."""
        try:
            return measure()
        except (torch.OutOfMemoryError, MemoryError) as err:
            message = f"out of memory at batch {self.config.batch_size}: {str(err).splitlines()[0][:120]}"
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.console.print(f"[yellow]note:[/] {spec.name} {figure} at {resolution} px: {message}")
        return [self.record(spec, figure, resolution, None, "", batch_size=self.config.batch_size, error=message)]


# ---- the trained figures -------------------------------------------------------------------------------


def protocol_config(bench: Bench, spec: BackboneSpec, steps: int, figure: str) -> TrainConfig:
    """The shared protocol, with only the backbone (and, for a wall-clock budget, K) differing; the run
    goes to OUT/`figure`/BACKBONE."""
    cfg = bench.config
    protocol = dict(
        backbone=spec.name, preset=cfg.preset, data=cfg.data, resolution=cfg.quality_size, steps=steps,
        batch_size=cfg.quality_batch_size, recipe=cfg.recipe, precision=cfg.precision, device=str(bench.device),
        seed=cfg.seed, out=str(Path(cfg.out) / figure / spec.name), sample_every=0, checkpoint_every=0,
        denoise_every=max(1, steps // 20), log_every=max(1, steps // 100),
    )
    return make_config(**{**protocol, **cfg.train_overrides})


def clear_run_dir(config: TrainConfig) -> None:
    """Remove what an earlier bench left in the run directory of `config`: a new run would append its
    metrics to the old metrics.jsonl and write its grids beside the old ones."""
    shutil.rmtree(config.out, ignore_errors=True)


def steps_for_seconds(bench: Bench, spec: BackboneSpec, seconds: float) -> int:
    """How many training steps of this backbone fit in `seconds`, from a few timed steps of the protocol's
    own step. The timed trainer is not the run: K must be known before a curriculum's first step."""
    trainer = Trainer(protocol_config(bench, spec, bench.config.steps, "timing"), console=Console(quiet=True))
    step_s = time_call(trainer.train_step, bench.device, warmup=1, repeats=3).median
    return max(1, int(seconds / step_s))


def scored_record(bench: Bench, spec: BackboneSpec, figure: str, label: int | str, run: Run,
                  notes: dict[str, object], sampling_steps: int = 1) -> Record:
    """Score `sampling_steps`-step samples of a trained run under the protocol (recorded in its own log
    too), as a record whose value is the FID and whose notes hold the other numbers, `notes`, the data
    and the recipe."""
    cfg = bench.config
    result = evaluate_run(run, cfg.data or "shapes", n=cfg.n_eval, n_reference=cfg.n_reference,
                          steps=sampling_steps)
    return bench.record(spec, figure, label, result.fid, "FID", batch_size=cfg.quality_batch_size,
                        notes={**score_notes(result), **notes, "data": result.reference_name,
                               "recipe": run.config.recipe})


def score_notes(result: EvalResult) -> dict[str, object]:
    """The numbers of an evaluation beside its FID (the record's value), for a record's notes."""
    return {k: v for k, v in asdict(result).items() if k not in ("fid", "reference_name", "kid_subset_size")}
