"""Super-resolution benchmark for the `func` backbone: a 32-px input's image function rendered at 64 and 128 px.

Reconstruction pre-training (paper §3.4, eq. 10) teaches `func` to map a clean 32-px image to
its image function. The function renders at any size, so it is an upsampler; this script measures how
good one is against the true image, next to bilinear and bicubic upsampling of the same 32-px input.

- ``shapes``: train on indices 0…N−1; test on indices from 1,000,000 (disjoint). Inputs are the
  analytic 32-px renders quantised to uint8 (as the training set); the truth at every size is the
  analytic float render ``render_shapes(i, s, s)``, exact at any resolution.
- ``celeba``: train on the first K images of ``celeba_64.npz`` resized to 32 px (antialiased bicubic,
  ``resize_square``). Two test sets, both disjoint from training:
  ``celeba64`` — the last T images of ``celeba_64.npz``: input 64→32, truth the original 64 px;
  ``celeba128`` — rows 218… of ``celeba_128.npz`` (CelebA ids > 7800, none of them in ``celeba_64``):
  input 128→32, truth 128 px and 128→64.

All outputs are clamped to [-1, 1] before PSNR (``cmzoo.train.pretrain.psnr``, peak-to-peak 2, the same
as 8-bit PSNR). Baselines use ``F.interpolate(..., align_corners=False, antialias=False)``.

    python benchmarks/superres.py --data shapes --steps 1000 --out benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import cmzoo
from cmzoo.cli import parse_field
from cmzoo.data import from_uint8, load_dataset, render_shapes, to_uint8
from cmzoo.data.sources import resize_square
from cmzoo.train.pretrain import pretrain_steps, psnr, reconstruct

INPUT = 32  # the training size and the size of every super-resolution input
SIZES = (32, 64, 128)
# func32+bicubic: the function rendered at 32 px, then bicubic. Against func it separates what the render
# adds between pixel centres from the error the function already has at the input's pixels.
METHODS = ("func", "bilinear", "bicubic", "func32+bicubic")
CELEBA128_FIRST_UNSEEN = 218  # rows 0…217 of celeba_128.npz are CelebA ids ≤ 7800, i.e. also in celeba_64.npz
SHAPES_TEST_OFFSET = 1_000_000


# ---------------------------------------------------------------------------------------------------
# Data: a training set at 32 px and test sets of (input 32 px, {size: truth})
# ---------------------------------------------------------------------------------------------------


def npz_images(path: Path) -> torch.Tensor:
    """The `images` of an .npz as uint8 (N, 3, H, W)."""
    with np.load(path, allow_pickle=False) as f:
        return torch.from_numpy(f["images"]).permute(0, 3, 1, 2).contiguous()


def shapes_data(n_train: int, n_test: int, render: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    train = from_uint8(load_dataset("shapes", INPUT, shapes_count=n_train).images)
    targets = from_uint8(load_dataset("shapes", render, shapes_count=n_train).images) if render else None
    index = range(SHAPES_TEST_OFFSET, SHAPES_TEST_OFFSET + n_test)
    x32 = from_uint8(to_uint8(torch.stack([render_shapes(i, INPUT, INPUT) for i in index])))
    truth = {s: torch.stack([render_shapes(i, s, s) for i in index]) for s in SIZES}
    return train, targets, {"shapes": {"input": x32, "truth": truth, "source": f"render_shapes(i), i = {index.start}…{index.stop - 1}"}}


def celeba_data(data_dir: Path, n_train: int, n_test: int, render: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    c64 = npz_images(data_dir / "celeba_64.npz")
    if n_train + n_test > len(c64):
        raise SystemExit(f"--train {n_train} + --test {n_test} exceeds the {len(c64)} images of celeba_64.npz")
    train = from_uint8(resize_square(c64[:n_train], INPUT))
    if render is not None and render > c64.shape[-1]:
        raise SystemExit(f"--render-resolution {render}: celeba_64.npz has {c64.shape[-1]}-px training images")
    targets = from_uint8(resize_square(c64[:n_train], render)) if render else None
    held = c64[len(c64) - n_test :]
    c128 = npz_images(data_dir / "celeba_128.npz")[CELEBA128_FIRST_UNSEEN:][:n_test]
    tests = {
        "celeba64": {
            "input": from_uint8(resize_square(held, INPUT)),
            "truth": {32: from_uint8(resize_square(held, 32)), 64: from_uint8(held)},
            "source": f"celeba_64.npz rows {len(c64) - n_test}…{len(c64) - 1} (64 px originals)",
        },
        "celeba128": {
            "input": from_uint8(resize_square(c128, INPUT)),
            "truth": {32: from_uint8(resize_square(c128, 32)), 64: from_uint8(resize_square(c128, 64)), 128: from_uint8(c128)},
            "source": f"celeba_128.npz rows {CELEBA128_FIRST_UNSEEN}…{CELEBA128_FIRST_UNSEEN + len(c128) - 1} (ids > 7800)",
        },
    }
    return train, targets, tests


# ---------------------------------------------------------------------------------------------------
# Upsamplers: the function's render and the interpolation baselines
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def func_upsample(net: torch.nn.Module, x: torch.Tensor, sizes: tuple[int, ...], batch: int = 64) -> dict[int, torch.Tensor]:
    """Reconstruct each 32-px image's function once and render it at every size: {size: (N, C, s, s)}."""
    net.eval()
    out = {s: [] for s in sizes}
    for part in x.split(batch):
        fn = reconstruct(net, part)
        for s in sizes:
            out[s].append(fn.render(s, s).clamp(-1, 1))
    return {s: torch.cat(v) for s, v in out.items()}


def interp_upsample(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Bilinear / bicubic upsampling (align_corners=False, no antialias), clamped to [-1, 1]."""
    if size == x.shape[-1]:
        return x
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=False).clamp(-1, 1)


def evaluate(net: torch.nn.Module, test: dict) -> tuple[dict, dict]:
    """PSNR (per image) of every method at every truth size, and the upsampled images."""
    x, truth = test["input"], test["truth"]
    sizes = tuple(sorted(truth))
    images = {"func": func_upsample(net, x, sizes)}
    for mode in ("bilinear", "bicubic"):
        images[mode] = {s: interp_upsample(x, s, mode) for s in sizes}
    images["func32+bicubic"] = {s: interp_upsample(images["func"][INPUT], s, "bicubic") for s in sizes}
    scores = {m: {s: psnr(images[m][s], truth[s]) for s in sizes} for m in METHODS}
    if torch.equal(x, truth[INPUT]):  # the input is the 32-px truth: interpolation there is the identity
        for mode in ("bilinear", "bicubic"):
            del scores[mode][INPUT]
    del scores["func32+bicubic"][INPUT]  # it is func itself there
    return scores, images


# ---------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        cpu = platform.processor() or "?"
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cmzoo": cmzoo.__version__,
    }


def summary(values: torch.Tensor) -> dict:
    v = values.double()
    return {"mean": v.mean().item(), "std": v.std().item(), "median": v.median().item(), "n": v.numel()}


def markdown_table(name: str, r: dict) -> list[str]:
    """The method × size table of one test set from its JSON record."""
    sizes = sorted(int(k) for k in r["psnr"]["func"])
    lines = [
        f"### {name}: {r['n']} test images — {r['source']}",
        "",
        ("PSNR (dB), mean ± std over images; higher is better. At 32 px bilinear/bicubic are the input itself "
        "(— where the input is the 32-px truth). `func32+bicubic` = func's 32-px render upsampled bicubically "
        "(a diagnostic, not a method)."),
        "",
        "| method | " + " | ".join(f"{s} px" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for m in METHODS:
        cells = [r["psnr"][m].get(str(s)) for s in sizes]
        lines.append(f"| {m} | " + " | ".join(f"{c['mean']:.2f} ± {c['std']:.2f}" if c else "—" for c in cells) + " |")
    per_image = r["psnr_per_image"]

    def wins(rival: str) -> str:
        return ", ".join(f"{s} px: {np.mean(np.greater(per_image['func'][str(s)], per_image[rival][str(s)])):.0%}"
                         for s in sizes if s != INPUT)

    lines += ["", f"Share of test images where func beats bicubic — {wins('bicubic')}; where it beats "
              f"`func32+bicubic` (its own 32-px render upsampled) — {wins('func32+bicubic')}.", ""]
    return lines


def reading(record: dict) -> str:
    """A paragraph of what the numbers do and do not show, worded from the numbers themselves."""
    results, train = record["results"], record["train"]

    def mean(name: str, m: str, size: int) -> float:
        return results[name]["psnr"][m][str(size)]["mean"]

    facts, gaps, render = [], [], []
    for name, r in results.items():
        top = max(int(k) for k in r["psnr"]["func"])
        gap = mean(name, "func", top) - mean(name, "bicubic", top)
        gaps.append(gap)
        facts.append(
            f"on {name} func reconstructs its own 32-px input at {mean(name, 'func', INPUT):.1f} dB and reaches "
            f"{mean(name, 'func', top):.1f} dB at {top} px against bicubic's {mean(name, 'bicubic', top):.1f} dB "
            f"({gap:+.1f} dB)"
        )
        render.append(mean(name, "func", top) - mean(name, "func32+bicubic", top))
    verdict = "a better" if min(gaps) > 0 else "a worse" if max(gaps) < 0 else "neither a better nor a worse"
    lo, hi = min(render), max(render)
    span = f"{lo:+.2f}" if f"{lo:+.2f}" == f"{hi:+.2f}" else f"{lo:+.2f} to {hi:+.2f}"
    if max(abs(lo), abs(hi)) < 0.5:
        how = (
            f"The render of func at the large size is {span} dB from bicubic applied to its own "
            "32-px render (`func32+bicubic`; the tables give the share of images where it wins): between pixel "
            "centres the learned functions add little beyond a smooth interpolation, so nearly all of the gap to "
            "bicubic is the reconstruction error at the input's own pixels (the model does not yet reproduce the "
            "32-px input; see the strip)"
        )
    else:
        how = (
            f"The render of func at the large size differs from bicubic applied to its own 32-px render "
            f"(`func32+bicubic`) by {lo:+.1f} to {hi:+.1f} dB, which is what the continuous render adds (or loses) "
            "between pixel centres; the rest of the gap to bicubic is the reconstruction error at the input's pixels"
        )
    curve = [c["mean_loss"] for c in train.get("loss_curve", [])]
    still = (
        f" (its training loss was still falling, {curve[-3]:.4f} → {curve[-1]:.4f} over the last 20 % of steps)"
        if len(curve) >= 3 and curve[-1] < curve[-3]
        else ""
    )
    return (
        f"After {train['steps']} reconstruction pre-training steps ({train['seconds'] / 60:.1f} min on "
        f"{record['machine']['torch_threads']} CPU thread(s), {record['params_trained']:,} trained parameters): "
        + "; ".join(facts)
        + f". At this budget the image function is {verdict} upsampler than bicubic interpolation. {how}. "
        "What this does not show: how a func trained as in the paper (≈144M parameters, 30 epochs of pre-training "
        "and then consistency training, on GPUs) compares — this is a tiny model trained for minutes, far from "
        f"converged{still}; nor anything about one-step generation, since these are reconstructions of clean "
        "inputs (σ = 0, feature extraction skipped). No method here can restore detail that the antialiased 32-px "
        "input does not contain; PSNR rewards the blurry mean of the missing detail, which favours smooth upsamplers."
    )


def markdown(record: dict) -> str:
    """The committed report: provenance, one table per test set, the reading."""
    info, train, config, overrides = record["machine"], record["train"], record["config"], record["overrides"]
    load = f", load average {info['loadavg']:.1f} at start" if "loadavg" in info else ""
    tables = [line for name, r in record["results"].items() for line in markdown_table(name, r)]
    strip = record["strip"]
    notes = ["## Notes", "", *(f"- {n}" for n in record["notes"]), ""] if record.get("notes") else []
    return "\n".join([
        f"# Super-resolution from 32 px: `func` image function vs bilinear / bicubic ({record['data']})",
        "",
        f"- command: `{record['command']}`",
        (f"- date: {record['date']}; machine: {info['cpu']}, {info.get('cpus', '?')} CPUs{load}, "
        f"{info['torch_threads']} torch thread(s), CPU only, torch {info['torch']}, python {info['python']}"),
        f"- model: `func` preset `{record['preset']}`" + (f" with overrides `{overrides}`" if overrides else "")
        + f" at 32 px — INR {config['inr_depth']} layers × {config['inr_width']}, {config['n_freqs']} Fourier "
        f"frequencies 1…{config['max_freq']:g}, {config['n_groups']} groups; {record['params_trained']:,} parameters "
        "trained (function-prediction module; the encoder is skipped by reconstruction)",
        (f"- training: reconstruction pre-training (paper §3.4, eq. 10), {train['images']} images at 32 px "
        f"({record['train_source']})"
        + (f", supervised at {train['render_resolution']} px (32×32 random pixel centres of each image's "
           f"{train['render_resolution']}-px version per step)" if train.get("render_resolution", INPUT) != INPUT else "")
        + f", {train['steps']} {train['optimizer']} steps, lr {train['lr']:g}"
        + (f" falling linearly to 0 over the last {train['lr_decay']:.0%} of the steps" if train.get("lr_decay") else "")
        + ", batch "
        f"{train['batch_size']}, seed {train['seed']}; {train['seconds']:.0f} s "
        f"({train['steps'] / train['seconds']:.2f} steps/s); train loss {train['loss_first20']:.4f} → "
        f"{train['loss_last20']:.4f} (first / last 20 steps, with variational coordinates)"),
        (f"- evaluation: {record['eval_seconds']:.1f} s; outputs clamped to [-1, 1]; PSNR = 10·log10(4 / MSE) on "
        "[-1, 1] images (equal to 8-bit PSNR); bilinear/bicubic = `F.interpolate(align_corners=False, "
        "antialias=False)` of the same 32-px input"),
        (f"- strip `{strip['file']}` ({strip['test_set']}, first {strip['rows']} test images), columns: 32-px input "
        "(nearest ×4) | bicubic 128 | func 128 | truth 128"),
        "",
        *tables,
        *notes,
        "## Reading",
        "",
        reading(record),
        "",
    ])


def save_strip(path: Path, test: dict, images: dict, rows: int) -> None:
    """Rows of [32-px input (nearest ×4) | bicubic 128 | func 128 | truth 128], 2-px white gaps."""
    from PIL import Image

    size = max(test["truth"])
    x = test["input"][:rows]
    cols = [
        F.interpolate(x, size=(size, size), mode="nearest"),
        images["bicubic"][size][:rows],
        images["func"][size][:rows],
        test["truth"][size][:rows],
    ]
    gap = 2
    canvas = torch.ones(3, rows * (size + gap) - gap, len(cols) * (size + gap) - gap)
    for r in range(len(x)):
        for c, col in enumerate(cols):
            canvas[:, r * (size + gap) : r * (size + gap) + size, c * (size + gap) : c * (size + gap) + size] = col[r]
    Image.fromarray(to_uint8(canvas).permute(1, 2, 0).numpy()).save(path)


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("shapes", "celeba"))
    p.add_argument("--steps", type=int, help="reconstruction pre-training steps")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", dest="overrides", type=parse_field, action="append", default=[],
                   metavar="KEY=VALUE", help="func config override, repeatable (e.g. --set inr_width=128)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam lr (paper: 1e-4 for 30 epochs; 1e-3 for a short CPU run)")
    p.add_argument("--lr-decay", type=float, default=0.0, metavar="FRACTION",
                   help="lr falls linearly to 0 over this last fraction of the steps (cmzoo pretrain's option)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--render-resolution", type=int, metavar="R",
                   help="supervise the 32-px inputs' functions at R px (random pixel subsets; cmzoo pretrain's option)")
    p.add_argument("--train", type=int, default=4096, help="training images (shapes indices / first CelebA rows)")
    p.add_argument("--test", type=int, default=256, help="test images per test set (celeba128 has at most 282)")
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--strip-rows", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared 2-core machine two threads ran ~20× slower per step)")
    p.add_argument("--tag", default="", help="suffix for the output file names (default: the data name)")
    p.add_argument("--note", action="append", default=[], help="a line for the report's notes, repeatable")
    p.add_argument("--markdown-only", type=Path, metavar="JSON",
                   help="only rewrite the .md beside a results .json (no training), e.g. after editing the wording")
    args = p.parse_args(argv)
    if not args.markdown_only and (args.data is None or args.steps is None):
        p.error("--data and --steps are required (unless --markdown-only)")
    return args


def command_line(argv: list[str] | None) -> str:
    """The command as it would be typed, for the report."""
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """The 32-px training images, their targets at --render-resolution (None without it) and the test sets."""
    if args.data == "shapes":
        return shapes_data(args.train, args.test, args.render_resolution)
    return celeba_data(args.data_dir, args.train, args.test, args.render_resolution)


def train_source(data: str, n_train: int) -> str:
    """How the training images were made, for the report."""
    if data == "shapes":
        return f"render_shapes(i), i = 0…{n_train - 1}, quantised to uint8"
    return f"celeba_64.npz rows 0…{n_train - 1}, 64 → 32 px antialiased bicubic"


def build_model(preset: str, overrides: dict, seed: int) -> tuple[torch.nn.Module, dict]:
    """A seeded 32-px `func` backbone and its record: preset, overrides, config and parameter counts."""
    torch.manual_seed(seed)
    net = cmzoo.create_backbone("func", preset=preset, resolution=INPUT, **overrides)
    config = cmzoo.get_backbone("func").make_config(preset, **overrides).model_dump()
    params = sum(p.numel() for p in net.parameters())
    # reconstruct() skips the feature-extraction encoder, so only the function-prediction module learns.
    skipped = sum(p.numel() for n, p in net.named_parameters() if n.startswith(("encoder.", "t_embedder.")))
    return net, {"preset": preset, "overrides": overrides, "config": config, "params_total": params,
                 "params_trained": params - skipped}


def loss_curve(losses: list[float], steps: int) -> list[tuple[int, float]]:
    """(last step, mean loss) of each tenth of the run."""
    every = max(1, steps // 10)
    parts = [losses[i : i + every] for i in range(0, len(losses), every)]
    return [(i * every + len(part), float(np.mean(part))) for i, part in enumerate(parts)]


def pretrain(net: torch.nn.Module, train: torch.Tensor, targets: torch.Tensor | None, args: argparse.Namespace) -> dict:
    """Reconstruction pre-training, printing its progress; returns the record's `train` entry."""
    started = time.perf_counter()
    losses = pretrain_steps(net, train, args.steps, lr=args.lr, batch_size=args.batch_size,
                            generator=torch.Generator().manual_seed(args.seed), targets=targets, decay=args.lr_decay)
    seconds = time.perf_counter() - started
    head, tail = np.mean(losses[:20]), np.mean(losses[-20:])
    curve = loss_curve(losses, args.steps)
    print("[superres] loss by step: " + ", ".join(f"{k}: {v:.4f}" for k, v in curve), flush=True)
    print(f"[superres] trained in {seconds:.0f} s ({args.steps / seconds:.2f} steps/s); "
          f"loss {head:.4f} → {tail:.4f} (train PSNR {10 * np.log10(4 / head):.2f} → {10 * np.log10(4 / tail):.2f} dB)", flush=True)
    return {"images": train.shape[0], "resolution": INPUT, "render_resolution": args.render_resolution or INPUT,
            "steps": args.steps, "lr": args.lr, "lr_decay": args.lr_decay, "batch_size": args.batch_size,
            "optimizer": "Adam", "seed": args.seed,
            "loss_first20": float(head), "loss_last20": float(tail), "seconds": seconds,
            "loss_curve": [{"step": k, "mean_loss": v} for k, v in curve]}


def result_record(test: dict, scores: dict) -> dict:
    """One test set's JSON record: its source, size and PSNR summaries and per-image values."""
    return {
        "source": test["source"],
        "n": test["input"].shape[0],
        "psnr": {m: {str(s): summary(v) for s, v in by_size.items()} for m, by_size in scores.items()},
        "psnr_per_image": {m: {str(s): [round(x, 3) for x in v.tolist()] for s, v in by_size.items()}
                           for m, by_size in scores.items()},
    }


def score_tests(net: torch.nn.Module, tests: dict) -> tuple[dict, dict]:
    """Every test set's record, printing its table rows, and (test, images) of those with a 128-px truth."""
    results, strips = {}, {}
    for name, test in tests.items():
        scores, images = evaluate(net, test)
        results[name] = result_record(test, scores)
        if max(test["truth"]) == max(SIZES):
            strips[name] = (test, images)
        for line in markdown_table(name, results[name])[6 : 6 + len(METHODS)]:
            print(line)
    return results, strips


def write_strip(out: Path, tag: str, strips: dict, rows: int) -> dict:
    """Save the strip of the first test set with a 128-px truth; returns the record's `strip` entry."""
    test_set = next(iter(strips))
    strip = {"file": f"superres_{tag}.png", "test_set": test_set, "rows": rows}
    save_strip(out / strip["file"], *strips[test_set], rows)
    return strip


def write_report(out: Path, tag: str, record: dict) -> None:
    """The record as superres_<tag>.json and its report as superres_<tag>.md."""
    (out / f"superres_{tag}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"superres_{tag}.md").write_text(markdown(record))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.markdown_only:
        record = json.loads(args.markdown_only.read_text())
        args.markdown_only.with_suffix(".md").write_text(markdown(record))
        return

    torch.set_num_threads(args.threads)
    info = machine()  # before loading, so the load average is that of the other jobs
    started = time.perf_counter()
    train, targets, tests = load_data(args)
    data_s = time.perf_counter() - started

    net, model = build_model(args.preset, dict(args.overrides), args.seed)
    print(f"[superres] {args.data}: train {tuple(train.shape)}, preset {args.preset} {model['overrides'] or ''}, "
          f"{model['params_trained']:,} params trained, {args.steps} steps, threads {torch.get_num_threads()}", flush=True)
    training = pretrain(net, train, targets, args)

    t0 = time.perf_counter()
    results, strips = score_tests(net, tests)
    eval_s = time.perf_counter() - t0

    tag = args.tag or args.data
    args.out.mkdir(parents=True, exist_ok=True)
    strip = write_strip(args.out, tag, strips, args.strip_rows)
    write_report(args.out, tag, {
        "benchmark": "superres",
        "data": args.data,
        "command": command_line(argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        **model,
        "train_source": train_source(args.data, args.train),
        "train": training,
        "data_seconds": data_s,
        "eval_seconds": eval_s,
        "strip": strip,
        "notes": args.note,
        "results": results,
    })
    print(f"[superres] wrote {args.out}/superres_{tag}.{{md,json,png}} in {time.perf_counter() - started:.0f} s total")


if __name__ == "__main__":
    main()
