"""Scoring a trained run, or saved images, against a data set (`cmzoo eval`, the bench's quality and
convergence figures): samples are generated, the reference images read at the same size, and the
measures of `cmzoo.metrics.evaluate` computed; a run's numbers are also recorded in its own log."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from cmzoo.data import load_dataset, native_resolution
from cmzoo.errors import ConfigError
from cmzoo.metrics.evaluate import MIN_IMAGES, EvalResult, evaluate_images
from cmzoo.metrics.inception import load_inception
from cmzoo.run import Run, Weights, check_count, generate
from cmzoo.rundir import RunDir


def check_eval_counts(n: int | None, n_reference: int | None, batch_size: int) -> None:
    """Refuse counts no metric can use before anything is generated or read (None: not given)."""
    if n is not None:
        check_count(n, "--n (samples to score)", MIN_IMAGES)
    if n_reference is not None:
        check_count(n_reference, "--n-reference (reference images)", MIN_IMAGES)
    check_count(batch_size, "--batch-size (images per forward pass)")


def evaluate_run(
    run: Run, data: str | Path, n: int = 50_000, size: int | None = None, batch_size: int = 64,
    steps: int | list[float] = 1, seed: int = 0, inception_weights_for_is: str | Path | None = None,
    n_reference: int | None = None, record: bool = True,
) -> EvalResult:
    """Generate n samples from `run` (at `size` px; any size for function backbones) and score them, on
    the run's device, against the data set at `data`, resized to the same size. With `record`, the
    numbers are also recorded in the run's own log (see :func:`record_evaluation`)."""
    check_eval_counts(n, n_reference, batch_size)
    load_inception()  # missing torch-fidelity or Inception weights fail before any sampling
    size = size or run.resolution
    images, _ = generate(run, n, steps, seed, sizes=[(size, size)], batch_size=batch_size, progress=True, uint8=True)
    reference = load_dataset(data, size)
    result = evaluate_images(images[(size, size)], reference.images[:n_reference], batch_size,
                             f"{reference.name}@{size}", inception_weights_for_is, next(run.model.parameters()).device)
    if record:
        record_evaluation(run, result, steps, size)
    return result


def evaluation_key(sampling_steps: int, size: int, weights: Weights = "ema") -> str:
    """An evaluation's name in a run's log: `<steps>-step_<size>px`, with `_online` or `_target` after it
    when it scored those weights rather than the sample EMA."""
    return f"{sampling_steps}-step_{size}px" + ("" if weights == "ema" else f"_{weights}")


def parse_evaluation_key(key: str) -> tuple[int, int, str]:
    """(sampling steps, size, weights) of an :func:`evaluation_key`."""
    steps, rest = key.split("-step_")
    size, _, weights = rest.partition("px")
    return int(steps), int(size), weights.removeprefix("_") or "ema"


def record_evaluation(run: Run, result: EvalResult, steps: int | list[float], size: int | None) -> None:
    """Add an evaluation of a run to its own log (metrics.jsonl, and TensorBoard when the run uses it) at
    the run's step, under `eval/` and its :func:`evaluation_key` (size None: the run's resolution), so
    that `cmzoo report` shows it."""
    if run.directory is None:
        raise ConfigError("this run has no run directory to record its evaluation in; score it with record=False")
    key = evaluation_key(len(run.recipe.schedule(steps)), size or run.resolution, run.weights)
    with RunDir(run.directory).open_log(run.config.log) as log:
        log.scalars({"step": run.step, "eval": {key: asdict(result)}})


def evaluate_image_source(
    images: str | Path, data: str | Path, size: int | None = None, batch_size: int = 64,
    device: str | torch.device = "auto", inception_weights_for_is: str | Path | None = None,
    n_reference: int | None = None,
) -> EvalResult:
    """Score existing images (a folder or .npz) against the data set at `data`, both at `size` px."""
    check_eval_counts(None, n_reference, batch_size)
    size = size or native_resolution(images)
    samples = load_dataset(images, size)
    reference = load_dataset(data, size)
    return evaluate_images(samples.images, reference.images[:n_reference], batch_size, f"{reference.name}@{size}",
                           inception_weights_for_is, device)
