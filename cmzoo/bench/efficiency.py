"""The efficiency figures (paper Fig. 2, Tables 2 and 3): parameters and FLOPs, the training step's time
and peak memory, one-step inference throughput, render time per output size for function backbones,
and multi-resolution sampling FPS as the paper defines it."""

from __future__ import annotations

import tempfile
from typing import Callable, Sequence

import torch
from rich.console import Console

from cmzoo.backbone import BackboneSpec
from cmzoo.bench.flops import count_flops
from cmzoo.bench.measure import PeakMemory
from cmzoo.bench.protocol import Bench
from cmzoo.bench.results import Record
from cmzoo.config import make_config
from cmzoo.data import ImageDataset
from cmzoo.engine.parameterization import SIGMA_MAX, ConsistencyFunction
from cmzoo.registry import build_backbone
from cmzoo.train.trainer import Trainer


def multires_fps(seconds_per_image: Sequence[float], sizes: int) -> float:
    """Paper Table 2: images per second when each image is wanted at `sizes` resolutions, from the
    seconds per image of every stage. Fixed-size backbones: one generation per size with one model per
    size (30000 / Σ(T₃₂ + T₆₄ + T₁₂₈) for 10,000 images per size); function backbones: one function per
    image, then one render per size (30000 / Σ(T_function + T_R32 + T_R64 + T_R128))."""
    return sizes / sum(seconds_per_image)


def model_counts(spec: BackboneSpec, preset: str, resolution: int) -> tuple[int, float]:
    """(parameters, forward GFLOP per image) of f_θ at `resolution`, built on the meta device: no
    memory and no arithmetic, so paper presets are counted in a second on any machine."""
    with torch.device("meta"):
        model = ConsistencyFunction(build_backbone(spec, spec.make_config(preset), resolution))
        x = torch.empty(1, 3, resolution, resolution)
        flops = count_flops(lambda: model(x, torch.full((1,), SIGMA_MAX)))
    return sum(p.numel() for p in model.parameters()), flops / 1e9


# ---- one-step inference --------------------------------------------------------------------------------


def inference_model(bench: Bench, spec: BackboneSpec, resolution: int) -> ConsistencyFunction:
    """The untrained f_θ at `resolution`, seeded, on the bench's device, for timing."""
    torch.manual_seed(bench.config.seed)
    net = build_backbone(spec, spec.make_config(bench.config.preset), resolution)
    return ConsistencyFunction(net).to(bench.device).eval().requires_grad_(False)


def noise(bench: Bench, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of pure-noise inputs at σ_max, as one-step sampling starts."""
    b = bench.config.batch_size
    g = torch.Generator().manual_seed(bench.config.seed)
    x = torch.randn(b, 3, resolution, resolution, generator=g) * SIGMA_MAX
    return x.to(bench.device), torch.full((b,), SIGMA_MAX, device=bench.device)


def throughput_record(bench: Bench, spec: BackboneSpec, figure: str, resolution: int | str, call: Callable[[], object],
                      meter: PeakMemory, **notes: object) -> Record:
    """Time `call` (one batch) and report ms per image, or images/s for one-step sampling; `meter`
    was created before the model was built."""
    b = bench.config.batch_size

    def run() -> object:
        with torch.no_grad(), bench.autocast():  # not inference_mode: torch.compile rejects its tensors
            return call()

    gflop = count_flops(run) / b / 1e9
    fast = bench.compiled(run)
    meter.reset()
    timing = bench.time(fast)
    per_image = timing.median / b
    value, unit = (1 / per_image, "img/s") if figure == "infer" else (per_image * 1e3, "ms/img")
    return bench.record(spec, figure, resolution, value, unit, batch_size=b, median_s=timing.median,
                        spread=timing.spread, repeats=len(timing.seconds), gflop_per_image=gflop,
                        peak_fraction=bench.peak_fraction(gflop, 1 / per_image),
                        peak_memory_mib=meter.peak_mib(), notes=dict(notes))


# ---- the figures --------------------------------------------------------------------------------------


def params_record(bench: Bench, spec: BackboneSpec, resolution: int) -> Record:
    params, gflop = model_counts(spec, bench.config.preset, resolution)
    return bench.record(spec, "params", resolution, params / 1e6, "M", gflop_per_image=gflop,
                        notes={"parameters": params})


def train_record(bench: Bench, spec: BackboneSpec, resolution: int) -> Record:
    """Time and peak memory of full consistency-training steps: data, online and target forwards, the
    distance, backward, optimizer and both EMAs — the trainer's own `train_step`."""
    cfg, b = bench.config, bench.config.batch_size
    images = torch.randint(0, 256, (max(b, 16), 3, resolution, resolution), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(cfg.seed))
    with tempfile.TemporaryDirectory() as out:  # the trainer writes nothing unless it runs its loop
        config = make_config(backbone=spec.name, preset=cfg.preset, resolution=resolution, batch_size=b,
                             precision=cfg.precision, recipe=cfg.recipe, device=str(bench.device), seed=cfg.seed,
                             steps=10_000, out=out)
        meter = PeakMemory(bench.device)  # the baseline before the model exists
        trainer = Trainer(config, console=Console(quiet=True), data=ImageDataset(images, name="random"))
        for notice in trainer.notices:  # e.g. LPIPS weights missing: the row measures pseudo-Huber steps
            bench.console.print(f"[yellow]note:[/] {spec.name} train at {resolution} px: {notice}")
        flops = count_flops(trainer.train_step)  # eager, and the optimizer's state is allocated
        if cfg.compile:
            trainer.compile()
        meter.reset()
        timing = bench.time(trainer.train_step)
        peak = meter.peak_mib()
    gflop = flops / b / 1e9
    return bench.record(
        spec, "train", resolution, b / timing.median, "img/s", batch_size=b, median_s=timing.median,
        spread=timing.spread, repeats=len(timing.seconds), gflop_per_image=gflop,
        peak_fraction=bench.peak_fraction(gflop, b / timing.median), peak_memory_mib=peak,
        notes={"recipe": trainer.config.recipe, "distance": trainer.config.distance, "memory": meter.method},
    )


def warm_up_process(bench: Bench, spec: BackboneSpec) -> None:
    """One untimed small training step, so that the first row's peak memory does not carry the
    process's one-off library initialisation (about 25 MiB resident on the CPU)."""
    preset = "tiny" if "tiny" in spec.presets else bench.config.preset
    config = bench.config.model_copy(update=dict(preset=preset, batch_size=2, warmup=0, repeats=1, compile=False))
    train_record(Bench(config, bench.device, bench.peak_tflops, bench.console), spec, min(config.resolutions))


def infer_record(bench: Bench, spec: BackboneSpec, resolution: int) -> Record:
    """One-step sampling: f_θ(σ_max·z, σ_max) for a batch (function backbones render at the same size)."""
    meter = PeakMemory(bench.device)
    model = inference_model(bench, spec, resolution)
    x, sigma = noise(bench, resolution)
    return throughput_record(bench, spec, "infer", resolution, lambda: model(x, sigma), meter)


def function_records(bench: Bench, spec: BackboneSpec) -> list[Record]:
    """Function backbones: the generator's time per image at the training size (`multires_base`), then
    the render time per image of those functions at each of `resolutions`."""
    base = bench.config.multires_base
    meter = PeakMemory(bench.device)
    model = inference_model(bench, spec, base)
    x, sigma = noise(bench, base)
    records = [throughput_record(bench, spec, "function", base, lambda: model.output_function(x, sigma), meter)]
    with torch.no_grad(), bench.autocast():
        fn = model.output_function(x, sigma)
    for r in bench.config.resolutions:
        records.append(throughput_record(bench, spec, "render", r, lambda r=r: fn.render(r, r), meter,
                                               function_px=base))
    return records


def multires_record(bench: Bench, spec: BackboneSpec, records: list[Record]) -> Record:
    """Multi-resolution FPS over `resolutions` from the measured stages (see `multires_fps`)."""
    sizes = bench.config.resolutions
    label = "+".join(str(r) for r in sizes)

    def stage(figure: str, resolution: int) -> Record | None:
        return next((r for r in records if r.backbone == spec.name and r.figure == figure
                     and r.resolution == str(resolution)), None)

    if spec.capabilities.function_output:
        stages, kind = [stage("function", bench.config.multires_base)] + [stage("render", r) for r in sizes], "function"
    else:
        stages, kind = [stage("infer", r) for r in sizes], "fixed"
    failed = [s for s in stages if s is None or s.error]
    if failed:
        return bench.record(spec, "multires", label, None, "FPS", batch_size=bench.config.batch_size,
                            error="a stage failed: " + ", ".join(f"{s.figure}@{s.resolution}" for s in failed if s))
    per_image = [s.median_s / s.batch_size for s in stages]
    fps = multires_fps(per_image, len(sizes))
    gflop = sum(s.gflop_per_image for s in stages)  # one image at every size
    return bench.record(
        spec, "multires", label, fps, "FPS", batch_size=bench.config.batch_size,
        gflop_per_image=gflop, peak_fraction=bench.peak_fraction(gflop, fps / len(sizes)),
        notes={"kind": kind, "stages": " + ".join(f"{s.figure}@{s.resolution}" for s in stages),
               "seconds_per_image_set": round(sum(per_image), 6)},
    )

