"""The recipe comparison's table and curve: FID of each run at each scored point, one-step and two-step,
by training step, or by budget minutes when the recipes' steps cost differently (a MeanFlow step is two
forwards and a JVP). Points come from the `results.json` that `cmzoo bench` (convergence) or
`benchmarks/peer_ict.py` wrote, and from the evaluations that `cmzoo eval --run … --checkpoint STEP`
added to a bench run's log (a two-step FID at an earlier point, which the bench scores at the end only).

    python benchmarks/recipe_table.py --out benchmarks/results/recipes_dit \\
        "ect, one Adam state=benchmarks/results/convergence_cpu" "ict-short=benchmarks/results/recipes_dit/ict_short"
    python benchmarks/recipe_table.py --by minutes --floor benchmarks/results/paper_cpu/floor.json \\
        --out benchmarks/results/recipes_meanflow "DiT, ect=benchmarks/results/recipes_dit/ect:dit" \\
        "DiT, MeanFlow=benchmarks/results/recipes_meanflow/dit:dit"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cmzoo.figures import plain_log_ticks, pyplot, save_figure
from cmzoo.scoring import parse_evaluation_key


def points(folder: Path, backbone: str) -> list[dict]:
    """Every scored point of `backbone` in a bench folder: step, minutes, sampling steps, FID, precision."""
    data = json.loads((folder / "results.json").read_text())
    if "rows" in data:  # peer_ict.py
        return [{"step": r["step"], "minutes": None, "sampling_steps": r["sampling_steps"], "fid": r["fid"],
                 "precision": r["precision"]} for r in data["rows"]]
    found = [{"step": r["notes"]["step"], "minutes": r["notes"]["minutes"], "sampling_steps": r["notes"]["sampling_steps"],
              "fid": r["value"], "precision": r["notes"]["precision"], "data": r["notes"]["data"],
              "n": r["notes"]["n_samples"]}
             for r in data["records"]
             if r["figure"] == "convergence" and r["backbone"] == backbone and r["value"] is not None]
    return found + logged_evaluations(folder / "convergence" / backbone / "metrics.jsonl", found)


def logged_evaluations(log: Path, found: list[dict]) -> list[dict]:
    """The sample EMA's evaluations in a run's log that `found` lacks, scored as the bench scores (same data, size and
    sample count); their minutes from the run's steps per minute."""
    if not found or not log.is_file():
        return []
    per_minute = found[0]["step"] / found[0]["minutes"]
    have = {(p["step"], p["sampling_steps"]) for p in found}
    extra = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        for key, result in entry.get("eval", {}).items():
            steps, _, weights = parse_evaluation_key(key)
            if (weights == "ema" and (entry["step"], steps) not in have and result["reference_name"] == found[0]["data"]
                    and result["n_samples"] == found[0]["n"]):
                extra.append({"step": entry["step"], "minutes": round(entry["step"] / per_minute, 2),
                              "sampling_steps": steps, "fid": result["fid"], "precision": result["precision"]})
    return extra


def table(runs: dict[str, list[dict]], by: str) -> str:
    """One row per run: one-step FID at every point, precision at its last, two-step FID (precision) where scored."""
    unit = " min" if by == "minutes" else ""

    def at(x: float) -> str:
        return f"{x:g}{unit}" if by == "minutes" else f"{x:,}"

    ones = sorted({p[by] for ps in runs.values() for p in ps if p["sampling_steps"] == 1})
    twos = sorted({p[by] for ps in runs.values() for p in ps if p["sampling_steps"] == 2})
    lines = ["| run | " + " | ".join(f"FID @ {at(x)}" for x in ones) + " | precision, last | "
             + " | ".join(f"2-step FID @ {at(x)}" for x in twos) + " |",
             "|---|" + "---:|" * (len(ones) + 1 + len(twos))]
    for label, ps in runs.items():
        one = {p[by]: p for p in ps if p["sampling_steps"] == 1}
        two = {p[by]: p for p in ps if p["sampling_steps"] == 2}
        last = one[max(one)]["precision"] if one else None
        cells = [f"{one[x]['fid']:.1f}" if x in one else "–" for x in ones]
        cells.append(f"{last:.2f}" if last is not None else "–")
        cells += [f"{two[x]['fid']:.1f} ({two[x]['precision']:.2f})" if x in two else "–" for x in twos]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve(runs: dict[str, list[dict]], by: str, path: Path, title: str, floor: float | None) -> None:
    """FID against steps or minutes, log scale: lines for one step, open squares for two."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, ps in runs.items():
        one = sorted((p[by], p["fid"]) for p in ps if p["sampling_steps"] == 1)
        line, = ax.plot(*zip(*one), "o-", label=label)
        two = sorted((p[by], p["fid"]) for p in ps if p["sampling_steps"] == 2)
        if two:
            ax.plot(*zip(*two), "s", color=line.get_color(), markerfacecolor="none", markersize=9)
    if floor is not None:
        ax.axhline(floor, color="grey", linestyle="--", linewidth=1, label=f"held-out real images ({floor:.1f})")
    ax.set(xlabel="training budget, minutes" if by == "minutes" else "training steps (batch 32)",
           ylabel="FID (500 samples vs 2,000)", yscale="log")
    ax.set_title(title, fontsize=9)
    plain_log_ticks(ax, sorted({p[by] for ps in runs.values() for p in ps}),
                    [v for v in (floor, *(p["fid"] for ps in runs.values() for p in ps)) if v])
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=FOLDER or LABEL=FOLDER:BACKBONE, FOLDER holding results.json")
    ap.add_argument("--backbone", default="dit", help="the backbone of a run that names none")
    ap.add_argument("--by", choices=("steps", "minutes"), default="steps", help="the table's and curve's x")
    ap.add_argument("--floor", type=Path, help="the FID of held-out real images (benchmarks/paper_cpu.py floor)")
    ap.add_argument("--title", default="tiny models, CelebA 32 px: one step (lines), two steps (squares)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    runs = {}
    for spec in args.runs:
        label, _, where = spec.partition("=")
        folder, _, backbone = where.partition(":")
        if not (Path(folder) / "results.json").is_file():
            raise SystemExit(f"{folder} holds no results.json: name a folder `cmzoo bench` or peer_ict.py wrote")
        runs[label] = points(Path(folder), backbone or args.backbone)
        if not runs[label]:
            raise SystemExit(f"{folder} holds no convergence points of {backbone or args.backbone}")
    key = "minutes" if args.by == "minutes" else "step"
    text = table(runs, key)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text + "\n")
    print(text)
    floor = json.loads(args.floor.read_text())["result"]["fid"] if args.floor else None
    curve(runs, key, out / "curve.png", args.title, floor)
    return text


if __name__ == "__main__":
    main()
