"""The parts of the paper's comparison at CPU scale that `cmzoo bench` does not measure itself.

``floor``: held-out real images scored exactly as samples are (the same counts and reference set), so
a reader knows what a perfect generator reads at these counts.

``table7``: one func model trained at a lower size samples a higher size (paper Table 7, App. D.3):
the low-size run's functions rendered at the higher size, against its samples at its own size
upscaled bicubically, and against a run trained at the higher size; FID at each size.

    python benchmarks/paper_cpu.py floor --data ../shared/data/celeba_64.npz --resolution 32 --n 500 \\
        --n-reference 2000 --out benchmarks/results/paper_cpu/floor.json
    python benchmarks/paper_cpu.py table7 --low RUN16 --high RUN32 --data ../shared/data/celeba_64.npz \\
        --sizes 32,64 --n 500 --n-reference 2000 --out benchmarks/results/paper_cpu/table7.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from cmzoo.data import from_uint8, load_dataset, to_uint8
from cmzoo.metrics.evaluate import EvalResult, evaluate_images
from cmzoo.run import generate, load_run


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
    for p in (f, t):
        p.add_argument("--data", required=True)
        p.add_argument("--n", type=int, default=500)
        p.add_argument("--n-reference", type=int, default=2000)
        p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
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
