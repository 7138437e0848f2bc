#!/usr/bin/env bash
# Convergence at CPU scale: one run each of func and DiT on CelebA at 32 px, scored at 5, 10, 20 and
# 40 training minutes (FID, sFID, precision, recall; 500 one-step samples against the first 2,000
# images, reference statistics cached) plus a two-step FID at the end. Writes results.md, the curve
# convergence.png and each run's sample grids at every point under benchmarks/results/convergence_cpu/.
# Flags override the config, e.g. --minutes 2.5,5,10,20 for a shorter run or --recipe ct-short.
set -euo pipefail
cd "$(dirname "$0")/.."
cmzoo bench --config benchmarks/configs/convergence_cpu.toml "$@"
