#!/usr/bin/env bash
# Device check for one GPU in <= 5 minutes, no downloads (labkit/checks/gpu.py says what it checks):
#   scripts/gpu_check.sh OUT_DIR [options]     one table on stdout, OUT_DIR/gpu_check.json (+ the bench files)
# With HF_TOKEN set and the hub reachable it also runs the real google/gemma-4-E2B-it + assistant (a download the
# first time: the time limit grows by GPU_CHECK_REAL_S, default 600 s). Options go to `labkit gpu-check`
# (e.g. --device cpu --size tiny for a CPU smoke run, --no-real).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=gpu_check_out
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT=$1; shift; fi
LIMIT=${GPU_CHECK_TIMEOUT:-300}
if [ -n "${HF_TOKEN:-}" ]; then LIMIT=$((LIMIT + ${GPU_CHECK_REAL_S:-600})); fi
rc=0
timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" -m labkit gpu-check --out "$OUT" "$@" || rc=$?
# vLLM section: only where vllm is installed (never on the CPU machine); labkit's server engine reads its counters
if "$PY" -c "import vllm" 2>/dev/null; then
  mkdir -p "$OUT"
  timeout --signal=INT --kill-after=10 "${VLLM_CHECK_TIMEOUT:-420}" "$PY" -m labkit vllm-check \
    --out "$OUT/vllm_check.json" || rc=$?
else
  echo "vllm not installed: vLLM section skipped"
fi
exit $rc
