# Two commands do everything: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fitbench-installed
# A CUDA build: CMAKE_ARGS="-DGGML_CUDA=on" make run   (see README)
export CMAKE_ARGS

.PHONY: run test lint typecheck install clean package gpu-check screenshot

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles llama.cpp on first install (~6 min on 2 cores); pip caches the wheel.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

run: $(STAMP)
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
	  $(BIN)/fitbench gui; \
	else \
	  echo "No display: running the headless one-click benchmark (fitbench quick)."; \
	  $(BIN)/fitbench quick --pdf fitbench-report.pdf; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks scripts
	$(BIN)/ruff format --check app tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/ruff check app tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache .mypy_cache
