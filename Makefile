# Set-up installs into .venv: the CPU PyTorch wheel where no CUDA GPU is present (a plain
# `torch` requirement would pull a multi-GB CUDA build), the package with its dev extra, and,
# when running as root, the Debian Fashion-MNIST package used by the benchmarks.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Extra pip options for the torch install, e.g. TORCH_PIP_ARGS="--index-url <your CPU wheel index>"
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup demo test lint docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup: $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA GPU found: installing torch from the package index"; \
		$(BIN)/pip install -q "torch>=2.4"; \
	else \
		echo "no CUDA GPU: installing the CPU build $(TORCH_SPEC)"; \
		$(BIN)/pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"; \
	fi
	$(BIN)/pip install -q -e ".[dev]"
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
		echo "Fashion-MNIST: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		&& echo "Fashion-MNIST: installed" \
		|| echo "Fashion-MNIST: apt-get failed; digits and the other built-in sets still work"; \
	else \
		echo "Fashion-MNIST: skipped (needs root: sudo apt-get install -y dataset-fashion-mnist)"; \
	fi
	@if command -v bible >/dev/null 2>&1; then \
		echo "bible-kjv (LM background text): present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get install -y -qq bible-kjv >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq bible-kjv >/dev/null)) \
		&& echo "bible-kjv: installed" || echo "bible-kjv: apt-get failed; LM background text is unavailable"; \
	else \
		echo "bible-kjv: skipped (needs root: sudo apt-get install -y bible-kjv)"; \
	fi
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium (browser tests of the report and evidence pages): present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) \
		&& echo "chromium: installed" || echo "chromium: apt-get failed; the browser tests will be skipped"; \
	else \
		echo "chromium: skipped (needs root: sudo apt-get install -y chromium); the browser tests will be skipped"; \
	fi

demo: setup
	$(BIN)/obliviate demo

test: setup
	$(BIN)/python -m pytest tests

# ruff (lint + format) on everything, mypy on src/ (configured in pyproject.toml)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site, offline and strict (a broken link, anchor or API reference fails it);
# docs/gen_pages.py generates the result pages from benchmarks/results/ during the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: setup
	$(BIN)/obliviate bench benchmarks/core.yaml --out runs/bench/core

clean:
	rm -rf $(VENV) runs site
