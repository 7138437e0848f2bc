"""`cmzoo train | pretrain | sample | render | edit | interpolate | eval | bench | report | backbones | recipes`:
a thin shell over the Python API.

Every user-facing failure, a usage error included, is a CmzooError: printed as one line, exit status 2
(130 for an interrupted run, which has written a checkpoint to resume from).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

import torch
from pydantic import BaseModel

from cmzoo.engine.distances import DISTANCES
from cmzoo.errors import CmzooError, ConfigError, TrainingInterrupted
from cmzoo.registry import list_recipes, require

if TYPE_CHECKING:
    from cmzoo.config import TrainConfig

DEVICE_HELP = "auto (CUDA when available; the default), cpu, cuda, cuda:N"


def parse_size(text: str) -> tuple[int, int]:
    """'64' → (64, 64); '96x48' → (96, 48) as (height, width)."""
    try:
        h, _, w = text.lower().partition("x")
        size = (int(h), int(w or h))
    except ValueError:
        raise ConfigError(f"size {text!r} is not N or HxW (e.g. 64 or 96x48)") from None
    if min(size) < 1:
        raise ConfigError(f"size {text!r} must be positive")
    return size


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [parse_size(s) for s in text.split(",") if s.strip()]


def listed(kind: type = str, flag: str = "value") -> Callable[[str], list]:
    """An option's type: 'unet,dit' → ['unet', 'dit']; with kind=int, '32,64' → [32, 64]."""

    def parse(text: str) -> list:
        try:
            return [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"{flag} {text!r} is not a comma-separated list of {kind.__name__} values") from None

    return parse


def parse_steps(values: Sequence[str]) -> int | list[float]:
    """`--steps 1` (a step count) or `--steps 80 0.66` / `--steps 80,0.66` (explicit σ list)."""
    items = [v for value in values for v in value.split(",") if v.strip()]
    try:
        if len(items) == 1 and items[0].isdigit():
            return int(items[0])
        return [float(v) for v in items]
    except ValueError:
        raise ConfigError(f"--steps takes a step count or decreasing σ values, got {' '.join(values)}") from None


def parse_checkpoint(value: str) -> int | str:
    """`--checkpoint 5560` (a training step) or `--checkpoint path/step_00005560.safetensors` (a file)."""
    return int(value) if value.isdigit() else value


def parse_field(pair: str) -> tuple[str, Any]:
    """'dim=256' → ('dim', 256): the value parsed as JSON when it can be (a number, true, a list), else text."""
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set takes FIELD=VALUE, got {pair!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class FieldValues(argparse.Action):
    """`--set dim=256 depth=6` → {'dim': 256, 'depth': 6} (see `parse_field`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, dict(parse_field(pair) for pair in values))


def given_fields(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The options given on the command line that are fields of `model` (an option not given is None):
    a command's flags are named as its config's fields, so no field is copied by hand."""
    return {name: value for name, value in vars(args).items() if name in model.model_fields and value is not None}


class RecipeHelp(argparse.HelpFormatter):
    """Fills {recipes} in an option's help with the installed recipes when the help is shown, so that the
    plugins are not loaded at every start for it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help.replace("{recipes}", ", ".join(r.name for r in list_recipes()))


def add_network_options(p: argparse.ArgumentParser) -> None:
    """What `cmzoo train` and `pretrain` build and train on: the backbone, its preset and fields, the data."""
    p.add_argument("--backbone", help="backbone name (`cmzoo backbones` lists them)")
    p.add_argument("--preset", help="backbone preset, e.g. tiny or paper")
    p.add_argument("--set", dest="backbone_overrides", nargs="+", action=FieldValues, metavar="FIELD=VALUE",
                   help="override backbone config fields")
    p.add_argument("--data", help="image folder, .npz, CIFAR-10 folder, or 'shapes' (default)")
    p.add_argument("--resolution", type=int, help="the network's input size in px (default 32)")


def add_run_dir_options(p: argparse.ArgumentParser, resume_help: str) -> None:
    """Where `cmzoo train` and `pretrain` write, the config file their flags override, and --resume."""
    p.add_argument("--out", help="run directory")
    p.add_argument("--config", metavar="FILE.toml", help="TrainConfig fields; flags override them")
    p.add_argument("--resume", metavar="RUN_DIR", help=resume_help)


def add_run_options(p: argparse.ArgumentParser, out: str, run: str | None = "required", weights: bool = False,
                    seed: bool = False, batch_size: bool = False) -> None:
    """The options of the commands that use a trained run: --run (`run`: 'required', its help, or None for
    none) and --checkpoint, --weights, --seed, --batch-size, --device and --out (`out`: its default file)."""
    if run is not None:
        required = run == "required"
        p.add_argument("--run", required=required, metavar="RUN_DIR", help=None if required else run)
        p.add_argument("--checkpoint", type=parse_checkpoint, metavar="STEP_OR_FILE",
                       help="a training step the run kept, or a checkpoint file (default: its newest)")
    if weights:
        p.add_argument("--weights", choices=("ema", "online", "target"), default="ema")
    if seed:
        p.add_argument("--seed", type=int, default=0)
    if batch_size:
        p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", default=out, metavar="FILE" + Path(out).suffix)


def grid_paths(out: Path, sizes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Path]:
    """The file of each size's grid: `out` itself for one size, else `out` with _HxW before its suffix."""
    if len(sizes) == 1:
        return {tuple(sizes[0]): out}
    return {(h, w): out.with_name(f"{out.stem}_{h}x{w}{out.suffix}") for h, w in sizes}


# ---- subcommands ---------------------------------------------------------------------------------


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of `cmzoo train` or `pretrain`: the resumed run's own config (--resume) or the --config
    file, with the options given on the command line over it."""
    from cmzoo.config import TrainConfig, make_config
    from cmzoo.rundir import RunDir

    given = given_fields(args, TrainConfig)
    if args.resume:
        return make_config(**{**RunDir(args.resume).read_config().model_dump(), **given, "out": args.resume})
    return make_config(args.config, **given)


def cmd_train(args: argparse.Namespace) -> int:
    from cmzoo.train.trainer import train

    run = train(train_config(args), resume=bool(args.resume))
    print(f"run written to {run.directory}")
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a backbone with a recipe (consistency training, MeanFlow)",
                       formatter_class=RecipeHelp)
    add_network_options(p)
    p.add_argument("--recipe", help="{recipes} (default: ect for the tiny preset, else ct; `cmzoo recipes` "
                   "describes them)")
    p.add_argument("--steps", type=int, help="training steps K (the curriculum's length)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=("radam", "adam"), help="default: the recipe's (radam for the paper's)")
    p.add_argument("--warmup", type=int, metavar="STEPS", help="linear lr warm-up steps, at most K/10 "
                   "(default: the recipe's)")
    p.add_argument("--distance", help=f"{', '.join(DISTANCES)} (default: the recipe's)")
    p.add_argument("--lpips-weights", help="AlexNet weights file for LPIPS")
    p.add_argument("--boundary-scale", type=float, metavar="S", help="evaluate c_skip and c_out at "
                   "σ_min + S(σ − σ_min) (default: the recipe's; 1 is the paper's parameterisation)")
    p.add_argument("--class-conditional", action="store_true", default=None, help="condition on the data set's labels")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--sample-every", type=int, help="sample grids every this many steps (default: 200 for the "
                   "tiny preset, 5000 for others; 0: at the end)")
    p.add_argument("--checkpoint-every", type=int, help="default: 200 for the tiny preset, 10000 for others "
                   "(0: at the end)")
    p.add_argument("--denoise-every", type=int, help="denoising distance per σ bucket every this many steps "
                   "(default: 50 for the tiny preset, 1000 for others; 0: never)")
    p.add_argument("--keep-checkpoints", type=int, metavar="K", help="keep the newest K checkpoints (default 3)")
    p.add_argument("--grad-accum", type=int, metavar="M", help="split each step's batch into M micro-batches")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="autocast precision (default "
                   "auto: bf16 on a GPU that supports it, else fp32)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the online and target forwards")
    p.add_argument("--max-bad-steps", type=int, help="skip up to this many non-finite-loss steps (default 0)")
    p.add_argument("--init-from", metavar="RUN_DIR", help="start from the weights of another run (e.g. pretrain)")
    p.add_argument("--pretrain-steps", type=int, help="reconstruction pre-training steps run first "
                   "(function backbones; default min(500, 2 × steps) for the tiny preset from scratch, else 0)")
    p.add_argument("--log", choices=("jsonl", "tensorboard"), help="metrics.jsonl and PNG grids are always written; "
                   "tensorboard: event files in the run directory as well (pip install tensorboard)")
    add_run_dir_options(p, "continue a run from its newest checkpoint")
    p.set_defaults(handler=cmd_train)


def cmd_sample(args: argparse.Namespace) -> int:
    from cmzoo.files import check_destination, writing
    from cmzoo.grids import check_image_destination, save_grid
    from cmzoo.run import generate, load_run

    sizes = parse_sizes(args.sizes) if args.sizes else None
    steps = parse_steps(args.steps)
    run = load_run(args.run, weights=args.weights, device=args.device, checkpoint=args.checkpoint)
    # Every destination is checked before sampling, and the functions (every size in one file) are saved first.
    paths = grid_paths(Path(args.out), sizes or [(run.resolution, run.resolution)])
    for path in paths.values():
        check_image_destination(path, "sample grid")
    if args.save_functions:
        require("function_output", run.spec, "--save-functions")
        check_destination(args.save_functions, "image functions")
    images, functions = generate(run, args.n, steps, args.seed, sizes, batch_size=args.batch_size, progress=True,
                                 functions=bool(args.save_functions))
    if args.save_functions:
        with writing(args.save_functions, "image functions"):
            functions.save(args.save_functions)
        print(f"wrote {args.save_functions} ({len(functions)} image functions)")
    for size, batch in images.items():
        print(f"wrote {save_grid(batch, paths[size], what='sample grid')}")
    return 0


def add_sample_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate images from a trained run")
    add_run_options(p, "samples.png", weights=True, seed=True, batch_size=True)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", nargs="+", default=["1"], help="a step count, or decreasing σ values")
    p.add_argument("--sizes", help="function backbones: sizes to render, e.g. 32,64,128,96x48")
    p.add_argument("--save-functions", metavar="F.safetensors", help="function backbones: save the image functions")
    p.set_defaults(handler=cmd_sample)


def cmd_render(args: argparse.Namespace) -> int:
    from cmzoo.device import resolve_device
    from cmzoo.grids import check_image_destination, save_grid
    from cmzoo.run import check_size, load_image_function

    height, width = check_size(parse_size(args.size))
    out = check_image_destination(args.out, "rendered grid")
    functions = load_image_function(args.functions).to(resolve_device(args.device))
    with torch.no_grad():
        images = functions.render(height, width).clamp(-1, 1)
    print(f"wrote {save_grid(images, out, what='rendered grid')}")
    return 0


def add_render_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render saved image functions at any size")
    p.add_argument("functions", metavar="F.safetensors")
    p.add_argument("--size", required=True, help="H or HxW, e.g. 512x256")
    add_run_options(p, "render.png", run=None)
    p.set_defaults(handler=cmd_render)


def cmd_edit(args: argparse.Namespace) -> int:
    from cmzoo.editing import edit
    from cmzoo.grids import check_image_destination, save_grid
    from cmzoo.run import load_run

    size = parse_size(args.size) if args.size else None
    steps = {"steps": parse_steps(args.steps)} if args.steps else {}
    out = check_image_destination(args.out, "edited image")
    run = load_run(args.run, weights=args.weights, device=args.device, checkpoint=args.checkpoint)
    image = edit(run, args.image, args.task, args.mask, size, seed=args.seed, **steps)
    print(f"wrote {save_grid(image, out, what='edited image')}")
    return 0


def add_edit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="zero-shot inpainting or super-resolution with a trained run")
    add_run_options(p, "edit.png", weights=True, seed=True)
    p.add_argument("--image", required=True, metavar="X.png", help="inpaint: the image (cropped to a square and "
                   "resized to the training size); superres: the low-resolution image, its side dividing the training size")
    p.add_argument("--task", required=True, choices=("inpaint", "superres"))
    p.add_argument("--mask", metavar="M.png", help="inpaint: the image's size, white = generate, black = keep "
                   "(grey levels thresholded at 0.5)")
    p.add_argument("--size", help="function backbones: output size H or HxW (default: the training size)")
    p.add_argument("--steps", nargs="+", help="a step count (default 8), or decreasing σ values")
    p.set_defaults(handler=cmd_edit)


def cmd_interpolate(args: argparse.Namespace) -> int:
    from cmzoo.editing import interpolate
    from cmzoo.grids import check_image_destination, save_grid
    from cmzoo.run import load_run

    size = parse_size(args.size) if args.size else None
    out = check_image_destination(args.out, "interpolation strip")
    run = load_run(args.run, weights=args.weights, device=args.device, checkpoint=args.checkpoint)
    frames = interpolate(run, *args.seeds, frames=args.frames, size=size)
    print(f"wrote {save_grid(frames, out, nrow=len(frames), what='interpolation strip')}")
    return 0


def add_interpolate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="one-step samples from noise slerped between two seeds, as a strip")
    add_run_options(p, "interpolation.png", weights=True)
    p.add_argument("--seeds", required=True, nargs=2, type=int, metavar=("A", "B"), help="the end frames' seeds")
    p.add_argument("--frames", type=int, default=8, help="frames, both ends included (default 8)")
    p.add_argument("--size", help="function backbones: frame size H or HxW (default: the training size)")
    p.set_defaults(handler=cmd_interpolate)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from cmzoo.train.pretrain import pretrain

    run_dir = pretrain(train_config(args), resume=bool(args.resume))
    print(f"pre-training run written to {run_dir}; continue with `cmzoo train --init-from {run_dir}`")
    return 0


def add_pretrain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="reconstruction pre-training of a function backbone (paper §3.4)")
    add_network_options(p)
    p.add_argument("--render-resolution", type=int, metavar="R",
                   help="supervise the functions at R px (above the input size; the data must have R px)")
    p.add_argument("--holdout", type=int, metavar="N", help="last N images never trained on; their PSNR is "
                   "logged every --sample-every steps (default min(256, N/10))")
    p.add_argument("--sample-every", type=int, help="held-out PSNR every this many steps (default 200)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate (paper: 1e-4)")
    p.add_argument("--lr-decay", type=float, metavar="FRACTION",
                   help="let the learning rate fall linearly to 0 over this last fraction of the steps (default 0)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--log", choices=("jsonl", "tensorboard"),
                   help="metrics.jsonl is always written; tensorboard: event files in the run directory as well")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every this many steps (default 200; 0: only at "
                   "the end); Ctrl-C or SIGTERM also writes one")
    add_run_dir_options(p, "continue a pre-training run from its newest checkpoint")
    p.set_defaults(handler=cmd_pretrain)


def cmd_eval(args: argparse.Namespace) -> int:
    from cmzoo.files import check_destination, write_text
    from cmzoo.metrics.evaluate import EvalResult
    from cmzoo.run import load_run
    from cmzoo.scoring import evaluate_image_source, evaluate_run, record_evaluation

    if (args.run is None) == (args.images is None):
        raise ConfigError("cmzoo eval takes exactly one of --run RUN_DIR or --images FOLDER_OR_NPZ")
    size = None
    if args.size:
        h, w = parse_size(args.size)
        if h != w:
            raise ConfigError(f"--size {args.size}: the reference images are square; give a square size")
        size = h
    out = check_destination(args.out, "evaluation results")
    check_destination(out.with_suffix(".md"), "evaluation table")
    steps = parse_steps(args.steps)
    run = load_run(args.run, args.weights, args.device, args.checkpoint) if args.run else None
    if run:
        result = evaluate_run(run, args.data, args.n, size, args.batch_size, steps, args.seed, args.inception_weights,
                              args.n_reference, record=False)
    else:
        result = evaluate_image_source(args.images, args.data, size, args.batch_size, args.device,
                                       args.inception_weights, args.n_reference)
    table = EvalResult.markdown_header() + "\n" + result.markdown_row()
    print(table)  # first: the numbers are kept even when no file can be written
    kept = "; the numbers are printed above"
    write_text(out, result.to_json(), "evaluation results", kept)
    write_text(out.with_suffix(".md"), table + "\n", "evaluation table", kept)
    if run:
        record_evaluation(run, result, steps, size)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="FID, sFID, precision/recall, KID (and IS) of a run or of images")
    add_run_options(p, "eval.json", run="generate samples from this run", weights=True, seed=True, batch_size=True)
    p.add_argument("--images", metavar="FOLDER_OR_NPZ", help="score these images instead")
    p.add_argument("--data", required=True, help="reference data (folder, .npz, CIFAR-10 folder)")
    p.add_argument("--n", type=int, default=50_000, help="samples to generate (paper: 50,000)")
    p.add_argument("--n-reference", type=int, help="use only the first N reference images (default: all)")
    p.add_argument("--size", help="evaluation size N or NxN (default: the run's resolution)")
    p.add_argument("--steps", nargs="+", default=["1"], help="a step count, or decreasing σ values")
    p.add_argument("--inception-weights", help="torch-fidelity Inception weights file, for IS")
    p.set_defaults(handler=cmd_eval)


def cmd_backbones(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmzoo.registry import list_backbones, plugin_problems

    table = Table(title="installed backbones")
    for column in ("name", "plugin", "capabilities", "presets", "description"):
        table.add_column(column)
    for spec in list_backbones():
        table.add_row(spec.name, spec.plugin, ", ".join(spec.capabilities.names()) or "-",
                      ", ".join(spec.presets), spec.description)
    console = Console()
    console.print(table)
    for problem in plugin_problems():
        console.print(f"[yellow]problem:[/] {problem}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmzoo.registry import plugin_problems

    table = Table(title="installed recipes")
    for column in ("name", "plugin", "needs", "description"):
        table.add_column(column)
    for recipe in list_recipes():
        table.add_row(recipe.name, recipe.plugin, ", ".join(recipe.requires) or "-", recipe.description)
    console = Console()
    console.print(table)
    for problem in plugin_problems():
        console.print(f"[yellow]problem:[/] {problem}")
    return 0


# ---- parser --------------------------------------------------------------------------------------


def add_backbones_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backbones", help="list installed backbones, their capabilities and presets")
    p.set_defaults(handler=cmd_backbones)


def add_recipes_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", help="list installed training recipes and the backbone capabilities they need")
    p.set_defaults(handler=cmd_recipes)


def cmd_bench(args: argparse.Namespace) -> int:
    from cmzoo.bench import BenchConfig, make_bench_config, run_bench

    result = run_bench(make_bench_config(args.config, **given_fields(args, BenchConfig)))
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="compare backbones: parameters, FLOPs, train/inference speed, memory, quality")
    p.add_argument("--backbones", type=listed(), help="comma-separated (default: unet,uvit,dit,func)")
    p.add_argument("--preset", help="backbone preset for every backbone (default tiny; the paper's: paper)")
    p.add_argument("--resolutions", type=listed(int, "--resolutions"), help="comma-separated px (default 32,64,128)")
    p.add_argument("--only", type=listed(), help="figures, comma-separated: params,train,infer,multires,quality,convergence "
                                  "(default: all but quality and convergence, which train every backbone)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, help="per training step and per inference call (default 8)")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="autocast precision (default fp32)")
    p.add_argument("--compile", action="store_true", default=None, help="time torch.compile'd models")
    p.add_argument("--warmup", type=int, help="untimed calls before timing (default 2)")
    p.add_argument("--repeats", type=int, help="timed repetitions; the median is reported (default 5)")
    p.add_argument("--multires-base", type=int, help="function backbones' training size for multires (default 64)")
    p.add_argument("--seed", type=int)
    p.add_argument("--data", help="quality: training and reference data (default: shapes)")
    p.add_argument("--quality-resolution", type=int, help="quality: training size (default: first resolution)")
    p.add_argument("--steps", type=int, help="quality: training steps per backbone (default 400)")
    p.add_argument("--seconds", type=float, help="quality: wall-clock budget per backbone instead of --steps")
    p.add_argument("--quality-batch-size", type=int, help="quality: training batch (default 32)")
    p.add_argument("--recipe", help="quality and train: recipe (default: the preset's)")
    p.add_argument("--n-eval", type=int, help="quality: one-step samples scored per backbone (default 1000)")
    p.add_argument("--n-reference", type=int, help="quality: reference images (default: all)")
    p.add_argument("--minutes", type=listed(float, "--minutes"), help="convergence: training minutes at which to score, e.g. 5,10,20,40")
    p.add_argument("--steps-per-minute", nargs="+", action=FieldValues, metavar="BACKBONE=RATE",
                   help="convergence: pin the step rates instead of timing a few steps, e.g. func=354 dit=556")
    p.add_argument("--train-set", dest="train_overrides", nargs="+", action=FieldValues, metavar="FIELD=VALUE",
                   help="quality and convergence: train config fields for every run, e.g. boundary_scale=10")
    p.add_argument("--out", help="results folder (default runs/bench)")
    p.add_argument("--config", metavar="FILE.toml", help="BenchConfig fields; flags override them")
    p.set_defaults(handler=cmd_bench)


def cmd_report(args: argparse.Namespace) -> int:
    from cmzoo.bench.page import write_bench_report
    from cmzoo.report import write_report

    write = write_bench_report if (Path(args.path) / "results.json").is_file() else write_report
    print(f"wrote {write(args.path, args.out)}")
    return 0


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained report.html for a run directory or a bench results folder")
    p.add_argument("path", metavar="RUN_DIR_OR_BENCH_FOLDER")
    p.add_argument("--out", metavar="FILE.html", help="default: PATH/report.html")
    p.set_defaults(handler=cmd_report)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line ConfigErrors, as every other cmzoo error."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (`{self.prog} --help` lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cmzoo", description="Consistency models with swappable backbones.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train_parser, add_sample_parser, add_render_parser, add_edit_parser, add_interpolate_parser,
                add_pretrain_parser, add_eval_parser, add_bench_parser, add_report_parser, add_backbones_parser,
                add_recipes_parser):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except CmzooError as err:
        print(f"cmzoo: error: {err}", file=sys.stderr)
        return 130 if isinstance(err, TrainingInterrupted) else 2
    except KeyboardInterrupt:
        print("cmzoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
