#!/usr/bin/env bash
# Issue 5: FID, sFID, precision and recall of a short CPU run of func and of DiT on the
# CelebA-64 subset, the same budget for both (tiny presets, ct-short, 64 px, batch 32, STEPS steps),
# 1,000 one-step samples each against the first NREF reference images. Results → benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/celeba_64.npz}
STEPS=${STEPS:-400}
N=${N:-1000}
NREF=${NREF:-2000}
OUT=benchmarks/results
mkdir -p "$OUT" runs
for bb in func dit; do
  start=$(date +%s)
  cmzoo train --backbone "$bb" --data "$DATA" --resolution 64 --steps "$STEPS" --batch-size 32 \
    --sample-every 0 --out "runs/quality_$bb"
  echo "$bb training seconds: $(( $(date +%s) - start ))" | tee "$OUT/quality_cpu_${bb}_time.txt"
  cmzoo eval --run "runs/quality_$bb" --data "$DATA" --n "$N" --n-reference "$NREF" --out "$OUT/quality_cpu_$bb.json"
  cp "runs/quality_$bb/samples/step_$(printf %08d "$STEPS")"*64x64.png "$OUT/quality_cpu_${bb}_samples.png" 2>/dev/null \
    || cp "runs/quality_$bb/samples/step_$(printf %08d "$STEPS").png" "$OUT/quality_cpu_${bb}_samples.png"
done
