#!/usr/bin/env bash
# Reproduce docs/performance.md: the quick preset (target configuration) and the full sweep.
# Usage: benchmarks/run_all.sh [OUTDIR]   (default outputs/bench); 1 torch thread, CPU time clock.
set -euo pipefail
OUT=${1:-outputs/bench}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
"$PY" -m liftpool bench --quick --out "$OUT/quick" --quiet
"$PY" -m liftpool bench --out "$OUT/full" --quiet --sections layer up scale
"$PY" -m liftpool bench --out "$OUT/full_net" --quiet --sections net
