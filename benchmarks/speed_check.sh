#!/usr/bin/env bash
# The speed measurement of this machine, in one bounded run (~11 min, at most ~12.5): run it once on a quiet
# machine (studies paused, load average below ~1), from the repository root:
#
#   bash benchmarks/speed_check.sh                 # results under benchmarks/results/speed-check/
#   QUICK=1 BACKEND=eager bash benchmarks/speed_check.sh   # smoke test (~3 min, tiny shapes, no inductor)
#
# 1. `python -m benchmarks.run --suites mqar roofline` (one JSON, rewritten after every row, so a stop keeps the
#    rows measured): the mqar suite (one MQAR step per architecture at the recall study's shape, d 32, L 32, V 64,
#    256 sequences, pipeline vs plain), then the roofline at the tiny size, the mqar study shape and the small
#    recall LM (recall-d64-L64) for lstm, transformer, minlstm (eager and compiled) and lstm_no_cell_residual (eager
#    only: its compile took 632 s), each compile capped at COMPILE_CAP s and also re-timed with a warm cache.
#    Killed after RUN_LIMIT s at most. Compiles are cold: inductor's cache is a fresh directory.
# 2. `python -m benchmarks.loader_blocks`: the memory-task loader with pipeline/data before block storage (4bfeac9)
#    vs now, and the pipeline tokens/s that implies with the mqar steps of 1.
# 3. `python -m benchmarks.speed_report`: the figures against the goals, the train.compile=auto table they imply,
#    and SUMMARY.md.
# Then: `python -m benchmarks.auto_compile benchmarks/results/speed-check/run/cpu-32-true.json --write` sets
# pipeline/training/compile.py's table (add --warm for the warm-cache break-even).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/speed-check}
PY=${PY:-python}
RUN_LIMIT=${RUN_LIMIT:-600}
COMPILE_CAP=${COMPILE_CAP:-150}
BACKEND=${BACKEND:-inductor}
QUICK_FLAGS=()
if [[ -n "${QUICK:-}" ]]; then
  QUICK_FLAGS=(--quick)
  SIZES=(tiny mqar)
else
  SIZES=(tiny mqar recall-d64-L64)
fi
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
TORCHINDUCTOR_CACHE_DIR=$(mktemp -d -t speed-check-inductor-XXXXXX)
export TORCHINDUCTOR_CACHE_DIR
mkdir -p "$OUT/run"
started=$(date +%s)
echo "speed_check: $(date), load: $(cut -d' ' -f1-3 /proc/loadavg), results under $OUT"

timeout --signal=TERM "$RUN_LIMIT" "$PY" -m benchmarks.run "${QUICK_FLAGS[@]}" --suites mqar roofline \
  --out "$OUT/run" --roofline-sizes "${SIZES[@]}" \
  --roofline-archs lstm transformer minlstm lstm_no_cell_residual \
  --roofline-compile-cap "$COMPILE_CAP" --roofline-recompile --roofline-no-fixes --roofline-backend "$BACKEND"
rc=$?
[[ $rc -eq 124 ]] && echo "speed_check: benchmarks.run stopped at ${RUN_LIMIT} s; its JSON keeps the rows it measured"
echo "speed_check: benchmarks.run done (rc $rc) at $(( $(date +%s) - started )) s"

"$PY" -m benchmarks.loader_blocks "${QUICK_FLAGS[@]}" --out "$OUT" --mqar-json "$OUT/run/cpu-32-true.json"
echo "speed_check: loader_blocks done at $(( $(date +%s) - started )) s"

"$PY" -m benchmarks.speed_report "$OUT"
rm -rf "$TORCHINDUCTOR_CACHE_DIR"
echo "speed_check: $(( $(date +%s) - started )) s in all; wrote $OUT/run/cpu-32-true.json, $OUT/run/SUMMARY.md," \
  "$OUT/run/roofline_profile_cpu.txt, $OUT/loader_blocks_cpu.json"
