"""The measuring half of `benchmarks/device_check.sh`: each subcommand prints one markdown cell for the
check's summary (the shell script runs `cmzoo` itself, so that the check goes through the command line).

    python benchmarks/device_check.py preflight                      # imports, versions, GPU; non-zero if unusable
    python benchmarks/device_check.py train RUN_DIR                  # steady it/s, peak memory, last loss
    python benchmarks/device_check.py resume WHOLE_RUN RESUMED_RUN   # how far a resumed run ends from the whole one
    python benchmarks/device_check.py eval RUN_DIR --n 2000 ...      # sampling, Inception pass, metrics, timed apart
    python benchmarks/device_check.py bench --train FOLDER | --infer FOLDER
    python benchmarks/device_check.py table3 TABLE3_FOLDER
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

# What the check needs; the GPU image lacks the first four (the script installs them from .whl).
REQUIRED = ("pydantic", "pydantic_core", "typing_inspection", "annotated_types", "torch", "torchvision", "timm",
            "einops", "pluggy", "rich", "safetensors", "numpy", "PIL", "matplotlib")
BUILTIN = ("unet", "uvit", "dit", "func")
OPTIONAL = {"torch_fidelity": "eval", "lpips": "LPIPS (the paper recipe's distance)",
            "tensorboard": "--log tensorboard"}


def preflight(args: argparse.Namespace) -> int:
    missing = []
    versions = {}
    for name in REQUIRED + tuple(OPTIONAL):
        try:
            module = importlib.import_module(name)
        except Exception as err:  # a broken install is as good as a missing one here
            missing.append(f"{name} ({type(err).__name__}: {err})")
            continue
        versions[name] = getattr(module, "__version__", getattr(module, "VERSION", "?"))
    required_missing = [m for m in missing if m.split()[0] in REQUIRED]
    import torch

    cuda = torch.cuda.is_available()
    parts = [f"python {sys.version.split()[0]}, torch {torch.__version__}"]
    if cuda:
        props = torch.cuda.get_device_properties(0)
        parts += [f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
                  f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor},"
                  f" bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}), {torch.cuda.device_count()} visible"]
    else:
        parts.append("no CUDA")
    parts.append(", ".join(f"{k} {versions[k]}" for k in ("pydantic", "pydantic_core", "torch_fidelity", "timm")
                           if k in versions))
    if not required_missing:
        from cmzoo import list_backbones, plugin_problems
        from cmzoo.engine.distances import lpips_available

        names = [s.name for s in list_backbones()]
        parts.append("backbones " + ",".join(names))
        required_missing += [f"backbone {b} (is cmzoo installed? pip install -e .)" for b in BUILTIN if b not in names]
        parts.append("LPIPS weights " + ("found" if lpips_available() else "missing: ct steps use pseudo-Huber"))
        missing += plugin_problems()
    missing += [m for m in required_missing if m not in missing]
    print("; ".join(parts) + (f"; missing: {'; '.join(missing)}" if missing else ""))
    if args.require_cuda and not cuda:
        return 1
    return 1 if required_missing else 0


def log_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, filter(None, lines)) if "loss" in r]


def steady_rate(records: list[dict]) -> float:
    """Steps per second between the last two log lines: `it_per_s` is cumulative from the loop's start, so
    it counts warm-up and compilation; the step at which each line was written follows from it."""
    (a, b) = records[-2:]
    return (b["step"] - a["step"]) / (b["step"] / b["it_per_s"] - a["step"] / a["it_per_s"])


def train(args: argparse.Namespace) -> int:
    run = Path(args.run)
    records = log_records(run)
    config = json.loads((run / "config.json").read_text())
    last = records[-1]
    rate = steady_rate(records) if len(records) > 1 else last["it_per_s"]
    memory = f", peak {last['memory_mib'] / 1024:.1f} GiB allocated" if "memory_mib" in last else ""
    print(f"{config['precision']}, {config['distance']}, batch {config['batch_size']}: {rate:.2f} it/s over steps "
          f"{records[-2]['step'] if len(records) > 1 else 0}–{last['step']}{memory}; loss {last['loss']:.4g}")
    return 0


def resume(args: argparse.Namespace) -> int:
    import torch

    from cmzoo.checkpoint import latest_checkpoint, load_checkpoint

    whole, resumed = (load_checkpoint(latest_checkpoint(Path(r) / "checkpoints")) for r in (args.whole, args.resumed))
    if whole["step"] != resumed["step"]:
        print(f"the resumed run ended at step {resumed['step']}, the whole one at {whole['step']}")
        return 1
    diffs = {name: max((resumed[name][k].float() - v.float()).abs().max().item() for k, v in whole[name].items())
             for name in ("online", "target", "ema")}
    scale = max(v.float().abs().max().item() for v in whole["online"].values())
    same = all(torch.equal(resumed["online"][k], v) for k, v in whole["online"].items())
    print(f"step {whole['step']}: largest difference " + ", ".join(f"{name} {d:.2e}" for name, d in diffs.items())
          + f" (weights up to {scale:.2f}); bitwise {'equal' if same else 'not equal'}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """The stages of `cmzoo eval`, timed apart. Without NVIDIA's Inception weights (87 MB: more than one
    device call carries) the pass is timed on the untrained network, and no metric is computed."""
    import torch

    from cmzoo.data import load_dataset
    from cmzoo.errors import ConfigError, WeightsError
    from cmzoo.metrics.evaluate import evaluate_statistics
    from cmzoo.metrics.inception import OfflineInceptionV3, inception_features, load_inception
    from cmzoo.metrics.statistics import feature_statistics, reference_statistics
    from cmzoo.run import generate, load_run

    def timed(fn):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    run = load_run(args.run, device=args.device)
    size = args.size or run.resolution
    images, sampling = timed(lambda: generate(run, args.n, sizes=[(size, size)], batch_size=args.batch_size,
                                              uint8=True)[0][(size, size)])
    try:
        network, note = load_inception(), ""
    except WeightsError as err:
        network = OfflineInceptionV3().to(memory_format=torch.channels_last)
        note = f"untrained Inception, no metrics ({err})"
    except ConfigError as err:  # no torch-fidelity: no network at all
        print(f"{args.n} one-step samples at {size} px in {sampling:.1f} s; no Inception pass: {err}")
        return 1
    features, inception = timed(lambda: inception_features(images, args.batch_size, args.device, progress=False,
                                                           model=network))
    cells = [f"{args.n} one-step samples at {size} px in {sampling:.1f} s",
             f"Inception pass {inception:.1f} s ({args.n / inception:.0f} img/s)"]
    if not note:
        data = load_dataset(args.data, size)
        reference, ref_seconds = timed(lambda: reference_statistics(data.images[:args.n_reference], data.name,
                                                                    args.batch_size, args.device, progress=False))
        result, metric_seconds = timed(lambda: evaluate_statistics(feature_statistics(*features), reference, data.name,
                                                                   device=args.device))
        Path(args.out).write_text(result.to_json())
        cells += [f"reference {reference.n} images {ref_seconds:.1f} s", f"metrics {metric_seconds:.1f} s",
                  f"FID {result.fid:.1f}"]
    print("; ".join(cells + ([note] if note else [])))
    return 0


def bench(args: argparse.Namespace) -> int:
    """One line per backbone from a bench folder: params, train img/s and peak memory (--train), or one-step
    img/s at the multires base size and multi-resolution FPS (--infer)."""
    folder = Path(args.train or args.infer)
    records = json.loads((folder / "results.json").read_text())["records"]

    def cell(backbone: str, figure: str, fmt: str) -> str:
        rows = [r for r in records if r["backbone"] == backbone and r["figure"] == figure
                and (figure != "infer" or r["resolution"] == str(args.base))]
        if not rows:
            return "–"
        r = rows[0]
        return f"failed: {r['error'][:60]}" if r["error"] else fmt.format(r=r, mib=r.get("peak_memory_mib") or 0)

    lines = []
    for backbone in dict.fromkeys(r["backbone"] for r in records):
        if args.train:
            cells = [cell(backbone, "params", "{r[value]:.1f}M params"),
                     "train " + cell(backbone, "train", "{r[value]:.0f} img/s, peak {mib:.0f} MiB")]
        else:
            cells = [f"one-step at {args.base} px " + cell(backbone, "infer", "{r[value]:.0f} img/s"),
                     "multires " + cell(backbone, "multires", "{r[value]:.0f} FPS")]
        lines.append(f"{backbone}: {', '.join(cells)}")
    print("<br>".join(lines) or "no rows")
    return 0


def table3(args: argparse.Namespace) -> int:
    rows = json.loads((Path(args.folder) / "table3.json").read_text())["rows"]
    print("hours for 900k steps (ratio to func; the paper's): " + ", ".join(
        f"{name} {r['hours']:,.1f} h ({r['ratio']:.2f}; {r['paper_ratio']:.2f}), {r['distance']}" for name, r in rows.items()))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preflight")
    p.add_argument("--require-cuda", action="store_true")
    p.set_defaults(handler=preflight)
    p = sub.add_parser("train")
    p.add_argument("run")
    p.set_defaults(handler=train)
    p = sub.add_parser("resume")
    p.add_argument("whole")
    p.add_argument("resumed")
    p.set_defaults(handler=resume)
    p = sub.add_parser("eval")
    p.add_argument("run")
    p.add_argument("--data", default="shapes")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--n-reference", type=int, default=2000)
    p.add_argument("--size", type=int)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="eval.json")
    p.set_defaults(handler=evaluate)
    p = sub.add_parser("bench")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--train", metavar="FOLDER", help="a bench of params and train")
    which.add_argument("--infer", metavar="FOLDER", help="a bench of infer and multires")
    p.add_argument("--base", type=int, default=64)
    p.set_defaults(handler=bench)
    p = sub.add_parser("table3")
    p.add_argument("folder")
    p.set_defaults(handler=table3)
    args = parser.parse_args()
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
