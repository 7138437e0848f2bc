#!/usr/bin/env bash
# The `paper`-preset efficiency benchmarks of all four backbones on one GPU (Fig. 2, Tables 2 and 3),
# sized to finish in about 8 minutes on an H100. On a lent device machine (torch preinstalled, no
# network), from the repository root:
#
#   here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#                  pydantic pydantic-core annotated-types typing-inspection "setuptools>=77"
#   device:      run(command="bash benchmarks/gpu_paper.sh", carry=[".whl"], timeout_s=600)
#
# Results land in benchmarks/results/{efficiency,table3}_cuda_paper/ and are copied to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . || {
  echo "gpu_paper.sh: could not install cmzoo; carry setuptools>=77 and pydantic wheels in .whl (see the header)" >&2
  exit 2
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 420 python3 -m cmzoo bench --config benchmarks/configs/efficiency_cuda_paper.toml
timeout 120 python3 benchmarks/table3_training_cost.py --device cuda --preset paper --precision bf16 --repeats 10
if [ -n "${OUT:-}" ]; then
  for d in efficiency_cuda_paper table3_cuda_paper; do
    mkdir -p "$OUT/$d" && cp benchmarks/results/$d/*.{md,json,csv,png} "$OUT/$d/" 2>/dev/null || true
  done
fi
