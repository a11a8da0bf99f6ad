# Two commands do everything: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fitbench-installed
# A CUDA build: CMAKE_ARGS="-DGGML_CUDA=on" make run   (see README)
export CMAKE_ARGS

.PHONY: run test lint typecheck install clean package package-smoke gpu-check screenshot llama-server

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles llama.cpp on first install (~6 min on 2 cores); pip caches the wheel.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

# llama.cpp's llama-server (fitbench serve; the serving tests), built once per llama-cpp-python
# version from its own llama.cpp source into the user cache dir (once: ~15-25 min on 2 cores, see
# docs/serving.md; CMAKE_ARGS as for the wheel). Its stamp makes every later run about a second.
llama-server: $(STAMP)
	@PYTHON=$(BIN)/python scripts/build-llama-server

# serving is optional for the app: a failed server build is reported, never stops `make run`
run: $(STAMP)
	@PYTHON=$(BIN)/python scripts/build-llama-server || \
	  echo "llama-server not built (see above): fitbench serve and quick --serve are unavailable"
	@# an NVIDIA driver but a CPU-only llama.cpp: print the command for a CUDA build (never run it)
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/python -m fitbench.core.hardware.llama_backends --offer || true; fi
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
	  $(BIN)/fitbench gui; \
	else \
	  echo "No display: running the headless one-click benchmark (fitbench quick)."; \
	  $(BIN)/fitbench quick --pdf fitbench-report.pdf; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks scripts
	$(BIN)/ruff format --check app tests benchmarks scripts
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) llama-server
	$(BIN)/ruff check app tests benchmarks scripts
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Desktop build: dist/fitbench/fitbench (PyInstaller folder build; see docs/packaging.md).
package: $(STAMP)
	$(BIN)/python -m pip install --quiet 'pyinstaller>=6.10'
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN \
	  --distpath dist --workpath build/pyinstaller packaging/fitbench.spec
	@du -sh dist/fitbench

# Starts the frozen build offscreen with an isolated home: detect --json and the GUI's first paint.
package-smoke: package
	$(BIN)/python scripts/package_smoke.py dist/fitbench/fitbench

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache .mypy_cache

# The README's screenshots: the real app under Xvfb, the real quick sweep (~5 min on 2 cores).
screenshot: $(STAMP)
	@Xvfb :77 -screen 0 1280x900x24 >/dev/null 2>&1 & pid=$$!; sleep 1; \
	DISPLAY=:77 QT_QPA_PLATFORM=xcb $(BIN)/python scripts/gui_screenshot.py --click \
	  --out docs/screenshot.png --bench-out docs/screenshot-benchmark.png --tabs-dir docs \
	  --timeout 1800; rc=$$?; \
	kill $$pid; exit $$rc

gpu-check:
	scripts/gpu-check all
