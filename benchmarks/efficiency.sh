#!/usr/bin/env bash
# Paper Fig. 2 (parameters, training step cost, one-step FPS vs resolution) and Table 2
# (multi-resolution FPS) on this machine's CPU; results → benchmarks/results/<config name>/.
#   params_paper          all four `paper` presets at 32/64/128 px (meta device, seconds)
#   efficiency_cpu_tiny   `tiny` presets: train, infer, render, multi-res (~5 min on 2 cores)
#   efficiency_cpu_paper  `paper` presets at batch 2: infer, render, multi-res (~5 min)
#   train_cpu_paper       `paper` presets at batch 2, 32 px: training steps (~3 min)
#   infer_cpu_paper_bf16  the bf16 option: `paper` presets at 64 px under bf16 autocast
#   compile_cpu_tiny      the torch.compile option: tiny DiT and func (compilation takes minutes)
# On a GPU: benchmarks/device_check.sh (a short loan), or cmzoo bench --config benchmarks/configs/efficiency_cuda_paper.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
for config in ${CONFIGS:-params_paper efficiency_cpu_tiny efficiency_cpu_paper train_cpu_paper infer_cpu_paper_bf16 compile_cpu_tiny}; do
  cmzoo bench --config "benchmarks/configs/$config.toml"
done
