# Two commands on a fresh machine:  make run  (quickstart training + STS table)  and  make test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# torch first, pinned, so no other requirement pulls a different build (2.13.0 is a CPU wheel here).
TORCH_SPEC ?= torch==2.13.0
# the data directory beside the checkout when there is one; else the toolkit's own (~/.cache/simcse/data),
# where the datasets a command needs are downloaded on first use
ifneq ($(wildcard ../shared/data),)
SIMCSE_DATA_DIR ?= $(abspath ../shared/data)
export SIMCSE_DATA_DIR
endif

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# every other package at the version the suite last passed with (regenerate: make constraints)
CONSTRAINTS := constraints.txt
BASE_STAMP := .venv-base/.checked

.PHONY: install browser run docs test test-slow test-docs test-fast lint bench bench-peers clean constraints base-check

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip uninstall --quiet --yes simcse 2>/dev/null || true  # the original package, or this one under its old name: both own simcse/
	rm -rf src/simcse.egg-info
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

# the tested environment, minus torch (TORCH_SPEC pins it) and this package
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -i -E '^(torch|simcse-toolkit)==' > $(CONSTRAINTS)

# the base dependencies alone in a fresh venv: simcse --help and an STS evaluation
base-check: $(BASE_STAMP)

$(BASE_STAMP): pyproject.toml $(CONSTRAINTS) $(STAMP)
	TORCH_SPEC="$(TORCH_SPEC)" PYTHON="$(PYTHON)" bash scripts/check_base_install.sh
	touch $(BASE_STAMP)

run: $(STAMP)
	$(BIN)/simcse train configs/quickstart.yaml --overwrite_output_dir true

# the demo page's end-to-end test drives Debian's chromium (installed here when missing and apt is usable)
browser:
	@bash scripts/install_browser.sh

# the documentation site (mkdocs.yml): warnings are errors, so a broken link or a stale reference fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/python -m mkdocs build --strict --clean --site-dir site

# the suite CI runs (under 15 minutes on 2 cores): every test but the slow ones and the docs pages
test: $(STAMP) browser base-check lint docs
	$(BIN)/python -m pytest -q -ra --durations=15 -m "not slow and not docs_pages"

# the tests over 15 s each on 2 cores: full training runs, int8 exports of the embedded model, grids of cells
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=15 -m "slow and not docs_pages"

# every code block of README and docs/, run page by page with a tiny model (tens of minutes on 2 cores)
test-docs: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m docs_pages tests/docs

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# sentence-transformers' onnx / openvino backends, the peers of benchmarks/encode_speed.py: optimum-onnx and
# optimum-intel need transformers < 4.58 (and different optimum releases), so each lives in its own venv
PEER_ONNX := .venv-peer-onnx/bin/python
PEER_OPENVINO := .venv-peer-openvino/bin/python

bench-peers: $(PEER_ONNX) $(PEER_OPENVINO)

$(PEER_ONNX):
	$(PYTHON) -m venv .venv-peer-onnx
	.venv-peer-onnx/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	.venv-peer-onnx/bin/python -m pip install --quiet "sentence-transformers[onnx]<6" "transformers<4.58"

$(PEER_OPENVINO):
	$(PYTHON) -m venv .venv-peer-openvino
	.venv-peer-openvino/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	.venv-peer-openvino/bin/python -m pip install --quiet "sentence-transformers[openvino]<6" "transformers<4.58" datasets

bench: $(STAMP) bench-peers
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,bench]"
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/eval_speed.py
	$(BIN)/python benchmarks/data_scale.py
	$(BIN)/python benchmarks/gradcache_memory.py
	$(BIN)/python benchmarks/encode_speed.py --peer-python-onnx $(PEER_ONNX) --peer-python-openvino $(PEER_OPENVINO)
	$(BIN)/python benchmarks/search_speed.py
	$(BIN)/python benchmarks/serve_load.py
	$(BIN)/python benchmarks/serve_load.py --mixed --duration 60
	bash benchmarks/gpu_bench.sh --cpu --steps 5 --skip compile

clean:
	rm -rf $(VENV) .venv-base .venv-peer-onnx .venv-peer-openvino runs .pytest_cache .ruff_cache src/*.egg-info
