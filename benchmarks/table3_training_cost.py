"""Paper Table 3: total training cost on CelebA 64 (batch 32, 900k iterations), from measured steps.

Times full consistency-training steps of every backbone at 64 px, batch 32, with `cmzoo bench`, and
extrapolates to the paper's 900,000 iterations. The paper's A6000 GPU·hours are printed beside the
estimate, and both as ratios to `func`, the comparison that carries over between machines.

    python benchmarks/table3_training_cost.py --device cpu --preset tiny
    python benchmarks/table3_training_cost.py --device cuda --preset paper --precision bf16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cmzoo.bench import run_bench

PAPER_GPU_HOURS = {"unet": 302.5, "dit": 207.5, "uvit": 212.5, "func": 223.75}  # + 12.9 h pre-training for func
ITERATIONS = 900_000
BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="default benchmarks/results/table3_<device>_<preset>")
    args = parser.parse_args()
    out = Path(args.out or f"benchmarks/results/table3_{args.device}_{args.preset}")
    result = run_bench(backbones=list(PAPER_GPU_HOURS), preset=args.preset, device=args.device, resolutions=[64],
                       only=["train"], batch_size=BATCH, precision=args.precision, warmup=2, repeats=args.repeats,
                       out=str(out), command="python benchmarks/table3_training_cost.py " +
                       f"--device {args.device} --preset {args.preset} --precision {args.precision}")
    steps = {r.backbone: r for r in result.records if r.figure == "train"}
    func = steps["func"].median_s
    lines = [
        f"# Table 3: training cost, 64 px, batch {BATCH}, {ITERATIONS:,} iterations",
        "",
        f"{result.environment['date']}; {result.environment['device_name']} ({args.device}); preset "
        f"`{args.preset}`, {args.precision}; `{result.environment['command']}`",
        "",
        "| backbone | s / step | hours for 900k steps | ratio to func | paper GPU·h (A6000) | paper ratio to func |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    table = {}
    for name, paper in PAPER_GPU_HOURS.items():
        s = steps[name].median_s
        hours = s * ITERATIONS / 3600
        table[name] = {"seconds_per_step": s, "hours": hours, "ratio": s / func, "paper_hours": paper,
                       "paper_ratio": paper / PAPER_GPU_HOURS["func"]}
        lines.append(f"| {name} | {s:.4f} | {hours:,.1f} | {s / func:.2f} | {paper} | "
                     f"{paper / PAPER_GPU_HOURS['func']:.2f} |")
    lines += ["", "The paper's func figure excludes its 12.9 h of reconstruction pre-training."]
    (out / "table3.md").write_text("\n".join(lines) + "\n")
    (out / "table3.json").write_text(json.dumps({"environment": result.environment, "rows": table}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
