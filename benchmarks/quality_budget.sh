#!/usr/bin/env bash
# The fixed-budget quality protocol (paper Tables 1–2 at CPU scale): every backbone trains on the same
# data with the same recipe, batch and wall-clock budget, then `cmzoo eval` scores its one-step
# samples; loss and denoising-distance curves of all four on one figure (stability.png).
set -euo pipefail
cd "$(dirname "$0")/.."
cmzoo bench --config benchmarks/configs/quality_budget_cpu.toml "$@"
