#!/usr/bin/env bash
# Device check for one GPU in <= 5 minutes, no downloads: correctness on tiny models (cuda), device copy rate,
# the bench table on random Gemma-4-E2B-shaped models with CUDA-synchronized timing, and the compile/CUDA-graph path.
# Extra arguments go to labkit.measure.gpu_check (e.g. --device cpu --size tiny for a CPU smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec timeout --signal=INT --kill-after=10 "${GPU_CHECK_TIMEOUT:-300}" "$PY" -m labkit.measure.gpu_check "$@"
