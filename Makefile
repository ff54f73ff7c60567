# Two commands on a fresh machine (Python >= 3.10 with pip):
#   make demo   - set up .venv, list plugins, train the baseline on the embedded data
#   make test   - set up .venv, then ruff, mypy, plugin check and the whole test suite
# VENV may point outside the checkout (CI caches it); editable installs are refreshed
# on every run, dependencies only when a pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
EDITABLES := -e . $(foreach p,$(PLUGIN_DIRS),-e $(p))
DEPS_HASH := $(shell cat pyproject.toml $(wildcard plugins/*/pyproject.toml) | sha256sum | cut -c1-16)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_HASH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint bench clean

$(DEPS_STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=77" wheel
	# torch/torchvision come from the registry (CUDA builds that also run on a CPU).
	$(PIP) install -q -e ".[dev]" $(foreach p,$(PLUGIN_DIRS),-e $(p))
	rm -f $(VENV)/.deps-*
	touch $@

install: $(DEPS_STAMP)
	$(PIP) install -q --no-deps --no-build-isolation $(EDITABLES)

demo: install
	$(VENV)/bin/lightly-mm plugins
	$(VENV)/bin/lightly-mm train --method clip --out lightly_mm_runs/demo --overwrite

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	LIGHTLY_MM_STRICT_PLUGINS=1 $(VENV)/bin/lightly-mm plugins check
	$(VENV)/bin/pytest -q

bench: install
	$(PY) benchmarks/losses.py

clean:
	rm -rf lightly_mm_runs .pytest_cache .mypy_cache .ruff_cache
