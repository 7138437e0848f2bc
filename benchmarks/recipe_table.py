"""The recipe comparison's table and curve: FID and precision per training step of each run, one-step
and two-step, from the `results.json` that `cmzoo bench` (convergence) or `benchmarks/peer_ict.py`
wrote.

    python benchmarks/recipe_table.py --out benchmarks/results/recipes_dit \
        "ect, one Adam state=benchmarks/results/convergence_cpu" "ict-short=benchmarks/results/recipes_dit/ict_short"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cmzoo.figures import pyplot, save_figure


def points(results: Path, backbone: str) -> list[dict]:
    """(step, sampling steps, FID, precision, train seconds) of every scored point of `backbone` in a results.json."""
    data = json.loads(results.read_text())
    if "rows" in data:  # peer_ict.py
        return [{"step": r["step"], "sampling_steps": r["sampling_steps"], "fid": r["fid"],
                 "precision": r["precision"], "train_s": r["train_s"]} for r in data["rows"]]
    return [{"step": r["notes"]["step"], "sampling_steps": r["notes"]["sampling_steps"], "fid": r["value"],
             "precision": r["notes"]["precision"], "train_s": r["notes"]["train_seconds"]}
            for r in data["records"]
            if r["figure"] == "convergence" and r["backbone"] == backbone and r["value"] is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=FOLDER holding results.json")
    ap.add_argument("--backbone", default="dit", help="the backbone whose records a bench results.json gives")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runs = {label: points(Path(folder) / "results.json", args.backbone) for label, folder in (r.split("=", 1) for r in args.runs)}
    steps = sorted({p["step"] for ps in runs.values() for p in ps})
    head = " | ".join(f"FID @ {s:,}" for s in steps)
    lines = [f"| run | {head} | precision @ {steps[-1]:,} | 2-step FID | 2-step precision |",
             "|---|" + "---:|" * (len(steps) + 3)]
    for label, ps in runs.items():
        one = {p["step"]: p for p in ps if p["sampling_steps"] == 1}
        two = [p for p in ps if p["sampling_steps"] == 2]
        fids = " | ".join(f"{one[s]['fid']:.1f}" if s in one else "–" for s in steps)
        last = one.get(steps[-1])
        lines.append(f"| {label} | {fids} | {last['precision']:.2f} | " if last else f"| {label} | {fids} | – | ")
        lines[-1] += f"{two[-1]['fid']:.1f} | {two[-1]['precision']:.2f} |" if two else "– | – |"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, ps in runs.items():
        one = sorted((p["step"], p["fid"]) for p in ps if p["sampling_steps"] == 1)
        line, = ax.plot(*zip(*one), "o-", label=label)
        two = [(p["step"], p["fid"]) for p in ps if p["sampling_steps"] == 2]
        if two:
            ax.plot(*zip(*two), "s", color=line.get_color(), markerfacecolor="none", markersize=9)
    ax.set(xlabel="training steps (batch 32)", ylabel="FID (500 samples vs 2,000)", yscale="log",
           title=f"tiny {args.backbone}, CelebA 32 px: one step (lines), two steps (squares)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "curve.png")


if __name__ == "__main__":
    main()
