# Two entry points (see README): `make demo` runs the relay's main job offline,
# `make test` installs everything into .venv and runs lint, types and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint demo bench load clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'

lint: install
	$(BIN)/ruff check relay sync_publisher tests bench
	$(BIN)/mypy relay sync_publisher

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

demo: install
	$(BIN)/relay demo --port 0

bench: install
	$(BIN)/python bench/audio_bench.py
	$(BIN)/python bench/sync_bench.py
	$(BIN)/python bench/offline_accuracy.py

# Calls per core (issue 8): about 8 minutes; loopback only.
load: install
	$(BIN)/python bench/load.py --steps 50,100,150,200,250,300,400 --seconds 15 --repeat 3 --keep-going

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
