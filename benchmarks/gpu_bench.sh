#!/usr/bin/env bash
# GPU benchmark (see benchmarks/gpu_bench.py): installs nothing, needs no network.
#   bash benchmarks/gpu_bench.sh [--cpu] [--steps N] [--model DIR] [--json OUT]
# Needs torch, transformers and sentence-transformers; imports simcse from ./src.
# Model: --model DIR, else .device/all-MiniLM-L6-v2 next to the repository, else the embedded package.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || command -v python3 )}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PYTHON" "$ROOT/benchmarks/gpu_bench.py" "$@"
