# Two entry points (see README): `make demo` runs the relay's main job offline,
# `make test` installs everything into .venv and runs lint, types and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint demo bench load clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: a second run installs nothing unless pyproject.toml changed (the install is
# editable, so source edits need no reinstall). The demo needs only the runtime packages.
$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed-runtime

install: $(VENV)/.installed-dev

lint: install
	$(BIN)/ruff check relay sync_publisher tests bench
	$(BIN)/mypy relay sync_publisher

# -rs: a skipped test always says why.
test: lint
	$(BIN)/pytest -q -rs -p no:cacheprovider

# `make demo DEMO_ARGS=--hold` keeps the console up after the call; `--engine openai` uses OpenAI.
DEMO_ARGS ?=
demo: $(VENV)/.installed-runtime
	$(BIN)/relay demo --port 0 $(DEMO_ARGS)

bench: install
	$(BIN)/python bench/audio_bench.py
	$(BIN)/python bench/sync_bench.py
	$(BIN)/python bench/offline_accuracy.py

# Calls per core (issue 8): about 8 minutes; loopback only.
load: install
	$(BIN)/python bench/load.py --steps 50,100,150,200,250,300,400 --seconds 15 --repeat 3 --keep-going

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
