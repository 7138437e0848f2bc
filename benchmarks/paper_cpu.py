"""The parts of the paper's comparison at CPU scale that `cmzoo bench` does not measure itself.

``floor``: held-out real images scored exactly as samples are (the same counts and reference set), so
a reader knows what a perfect generator reads at these counts.

``gather``: the convergence runs of several `cmzoo bench` folders (one backbone each, run one at a
time so each has its own core) as one bench folder: results, the curve with the floor, each run's
grids and metrics, the `cmzoo report` page, and `comparison.md`: one row per backbone (steps, FID at
each point, the other metrics at the last, two-step FID) and the floor's row.

``stability``: the consistency loss and the total denoising distance of several runs over their budget
(paper Figs. 1a and 7), with their FID at each scored point.

``table7``: one func model trained at a lower size samples a higher size (paper Table 7, App. D.3):
the low-size run's functions rendered at the higher size, against its samples at its own size
upscaled bicubically, and against a run trained at the higher size; FID at each size.

    python benchmarks/paper_cpu.py floor --data ../shared/data/celeba_64.npz --resolution 32 --n 500 \\
        --n-reference 2000 --out benchmarks/results/paper_cpu/floor.json
    python benchmarks/paper_cpu.py gather --out benchmarks/results/paper_cpu/four --floor FLOOR.json \\
        benchmarks/results/paper_cpu/four_unet benchmarks/results/recipes_dit/ect:dit
    python benchmarks/paper_cpu.py stability --out benchmarks/results/paper_cpu/stability \\
        "U-Net, batch 32=FOLDER:unet" "func, batch 4=FOLDER:func"
    python benchmarks/paper_cpu.py table7 --low RUN16 --high RUN32 --data ../shared/data/celeba_64.npz \\
        --sizes 32,64 --n 500 --n-reference 2000 --out benchmarks/results/paper_cpu/table7.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from cmzoo.bench.convergence import plot_convergence
from cmzoo.bench.page import write_bench_report
from cmzoo.bench.quality import plot_stability
from cmzoo.bench.results import BenchResult, Record, markdown_table, write_results
from cmzoo.data import from_uint8, load_dataset, to_uint8
from cmzoo.metrics.evaluate import EvalResult, evaluate_images
from cmzoo.run import generate, load_run
from cmzoo.rundir import RunDir


def provenance(argv: list[str]) -> dict[str, str]:
    """The command, commit, machine and date a result came from."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"command": " ".join(["python", "benchmarks/paper_cpu.py", *argv]), "commit": commit,
            "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                       f"torch {torch.__version__}", "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"}


def floor(data: str, resolution: int, n: int, n_reference: int) -> EvalResult:
    """Real images n_reference … n_reference + n − 1 (never in the reference set) against the first n_reference."""
    images = load_dataset(data, resolution).images
    if len(images) < n_reference + n:
        raise SystemExit(f"{data} has {len(images)} images; the floor needs {n_reference + n}")
    return evaluate_images(images[n_reference : n_reference + n], images[:n_reference],
                           reference_name=f"{Path(data).name}@{resolution}")


def bench_folder(spec: str) -> tuple[Path, str | None]:
    """FOLDER or FOLDER:BACKBONE → (folder, backbone or None for every backbone it holds)."""
    folder, _, backbone = spec.partition(":")
    if not (Path(folder) / "results.json").is_file():
        raise SystemExit(f"{folder} holds no results.json: name a folder `cmzoo bench` wrote")
    return Path(folder), backbone or None


def convergence_of(folder: Path, backbone: str | None) -> tuple[dict, list[Record]]:
    """A bench folder's saved results and its convergence records (of `backbone`, or all)."""
    data = json.loads((folder / "results.json").read_text())
    records = [Record(**r) for r in data["records"]
               if r["figure"] == "convergence" and (backbone is None or r["backbone"] == backbone)]
    if not records:
        raise SystemExit(f"{folder} holds no convergence records{f' of {backbone}' if backbone else ''}")
    return data, records


def gather(specs: list[str], out: Path, floor_file: Path | None, argv: list[str]) -> BenchResult:
    """One bench folder from the convergence runs of several: records, grids and metrics (not checkpoints)."""
    records, sources, first = [], [], None
    for spec in specs:
        folder, backbone = bench_folder(spec)
        data, found = convergence_of(folder, backbone)
        first = first or data
        env = data["environment"]
        sources.append(f"{env['command']} (git {env.get('git_commit')}, {env['date']}, {env['device_name']}, "
                       f"{env['torch_threads']} threads)")
        for name in dict.fromkeys(r.backbone for r in found):
            target = out / "convergence" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(folder / "convergence" / name, target, ignore=shutil.ignore_patterns("checkpoints"))
        for r in found:
            r.notes["grid"] = str(out / Path(r.notes["grid"]).relative_to(folder))
        records += found
    assert first is not None
    backbones = list(dict.fromkeys(r.backbone for r in records))
    info = provenance(argv)
    environment = {**first["environment"], "command": info["command"], "git_commit": info["commit"],
                   "date": info["date"], "sources": sources}
    result = BenchResult(records, environment, {**first["config"], "backbones": backbones, "out": str(out)})
    out.mkdir(parents=True, exist_ok=True)
    write_results(result, out, plot=False)
    floor_result = json.loads(floor_file.read_text())["result"] if floor_file else None
    plot_convergence(records, out / "convergence.png", floor_result["fid"] if floor_result else None)
    (out / "comparison.md").write_text(comparison_table(records, floor_result) + "\n")
    write_bench_report(out)
    return result


def comparison_table(records: list[Record], floor_result: dict | None) -> str:
    """One row per backbone: its steps, one-step FID at every point any run was scored at ("–" where it was
    not), sFID, precision, recall and KID at its last, and the two-step FID and precision at its end; then the
    floor's row, scored the same way."""
    def others(scores: dict) -> list[str]:
        return [f"{scores['sfid']:.1f}", f"{scores['precision']:.2f}", f"{scores['recall']:.3f}",
                f"{scores['kid_mean']:.3f}"]

    scored = [r for r in records if r.value is not None]
    one_step = [r for r in scored if r.notes["sampling_steps"] == 1]
    points = sorted({r.notes["minutes"] for r in one_step})
    rows = []
    for backbone in dict.fromkeys(r.backbone for r in records):
        one = {r.notes["minutes"]: r for r in one_step if r.backbone == backbone}
        two = [r for r in scored if r.backbone == backbone and r.notes["sampling_steps"] == 2]
        last = one[max(one)]
        two_step = [f"{two[-1].value:.1f}", f"{two[-1].notes['precision']:.2f}"] if two else ["–", "–"]
        rows.append([backbone, f"{last.notes['steps']:,}",
                     " / ".join(f"{one[m].value:.1f}" if m in one else "–" for m in points),
                     *others(last.notes), *two_step])
    if floor_result:
        rows.append([f"floor: {floor_result['n_samples']} held-out real images", "", f"{floor_result['fid']:.1f}",
                     *others(floor_result), "", ""])
    fid_at = f"FID @ {' / '.join(f'{m:g}' for m in points)} min"
    return markdown_table(["backbone", "steps", fid_at, "sFID", "precision", "recall", "KID", "2-step FID",
                           "2-step precision"], rows)


def stability(specs: dict[str, str], out: Path) -> str:
    """stability.png (loss and total denoising distance over each run's budget) and a markdown table: each
    run's steps and batch, FID at each point, and the total denoising distance at the start (step 0: a run
    started from another's weights starts low), at its lowest after that, and at the end."""
    runs, rows, labels = {}, [], []
    for label, spec in specs.items():
        folder, backbone = bench_folder(spec)
        data, found = convergence_of(folder, backbone)
        name = found[0].backbone
        runs[label] = folder / "convergence" / name
        logged = RunDir(runs[label]).read_metrics()
        totals = [(m["step"], sum(m["denoising_distance"].values())) for m in logged if "denoising_distance" in m]
        low_step, low = min(totals[1:] or totals, key=lambda t: t[1])
        one = [r for r in found if r.backbone == name and r.notes["sampling_steps"] == 1]
        labels = max(labels, [r.resolution for r in one], key=len)  # a run stopped early has fewer points
        rows.append([label, f"{one[-1].notes['steps']:,}", str(data["config"]["quality_batch_size"]),
                     " / ".join(f"{r.value:.1f}" for r in one), f"{totals[0][1]:.3f}", f"{low:.3f} @ {low_step:,}",
                     f"{totals[-1][1]:.3f}", f"{totals[-1][1] / low:.2f}"])
    out.mkdir(parents=True, exist_ok=True)
    plot_stability(runs, out / "stability.png", sigma=None, per_budget=True)
    points = " / ".join(labels)
    table = markdown_table(["run", "steps", "batch", f"FID at {points}", "total distance at the start",
                            "lowest (step)", "at the end", "end / lowest"], rows)
    (out / "stability.md").write_text(table + "\n")
    return table


def table7(low: str, high: str, data: str, sizes: list[int], n: int, n_reference: int,
           seed: int) -> list[dict[str, object]]:
    """FID at each size of: the high-size run's samples, the low-size run's functions rendered at that size,
    and the low-size run's samples at its own size upscaled bicubically (uint8 round trip, as saved images)."""
    low_run, high_run = load_run(low, device="cpu"), load_run(high, device="cpu")
    rows = []
    own = low_run.resolution
    for size in sizes:
        reference = load_dataset(data, size).images[:n_reference]
        name = f"{Path(data).name}@{size}"
        rendered, _ = generate(low_run, n, 1, seed, sizes=[(size, size), (own, own)], progress=True)
        upscaled = F.interpolate(from_uint8(to_uint8(rendered[(own, own)])), size=(size, size),
                                 mode="bicubic", align_corners=False).clamp(-1, 1)
        candidates = {f"{own}-px func, functions rendered at {size} px": rendered[(size, size)],
                      f"{own}-px func, {own}-px samples upscaled bicubically": upscaled}
        if size == high_run.resolution or high_run.spec.capabilities.any_resolution:
            high_images, _ = generate(high_run, n, 1, seed, sizes=[(size, size)], progress=True)
            candidates[f"{high_run.resolution}-px func at {size} px"] = high_images[(size, size)]
        for label, images in candidates.items():
            result = evaluate_images(images, reference, reference_name=name)
            rows.append({"size": size, "model": label, **asdict(result)})
            print(f"{size} px  {label}: FID {result.fid:.1f}  precision {result.precision:.3f}", flush=True)
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("floor", help="held-out real images scored as samples")
    f.add_argument("--resolution", type=int, default=32)
    t = sub.add_parser("table7", help="a low-size func model sampled at higher sizes")
    t.add_argument("--low", required=True, metavar="RUN_DIR")
    t.add_argument("--high", required=True, metavar="RUN_DIR")
    t.add_argument("--sizes", default="32,64")
    t.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("gather", help="several bench folders' convergence runs as one bench folder")
    g.add_argument("folders", nargs="+", metavar="FOLDER[:BACKBONE]")
    g.add_argument("--floor", type=Path, help="the floor's JSON, drawn on the curve")
    s = sub.add_parser("stability", help="loss and total denoising distance of several runs over their budget")
    s.add_argument("runs", nargs="+", metavar="LABEL=FOLDER[:BACKBONE]")
    for p in (f, t):
        p.add_argument("--data", required=True)
        p.add_argument("--n", type=int, default=500)
        p.add_argument("--n-reference", type=int, default=2000)
    for p in (f, t, g, s):
        p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.what == "gather":
        gather(args.folders, args.out, args.floor, argv)
        print(f"wrote {args.out}")
        return
    if args.what == "stability":
        print(stability(dict(r.split("=", 1) for r in args.runs), args.out))
        return
    if args.what == "floor":
        result: object = asdict(floor(args.data, args.resolution, args.n, args.n_reference))
        print(EvalResult.markdown_header() + "\n" + EvalResult(**{k: v for k, v in result.items()}).markdown_row())
    else:
        result = table7(args.low, args.high, args.data, [int(s) for s in args.sizes.split(",")], args.n,
                        args.n_reference, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**provenance(argv), "result": result}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
