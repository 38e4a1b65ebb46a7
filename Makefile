# Two entry points (see README): `make demo` runs the relay's main job offline,
# `make test` installs everything into .venv and runs lint, types and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint plugin demo bench load clean lock test-latest

# Installs come from the lock files in requirements/ (exact versions, every file's hash), so a
# fresh machine gets what the last green run used; pyproject.toml keeps ranges for library users.
# `make lock` refreshes them on purpose. pip itself and the build backend are locked too.
PIP := $(BIN)/python -m pip
LOCKED := $(PIP) install --quiet --require-hashes --no-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(LOCKED) -r requirements/build.txt

# Stamps: a second run installs nothing unless a lock changed (the install is editable, so
# source edits need no reinstall). The demo needs only the runtime packages.
$(VENV)/.installed-runtime: requirements/runtime.txt requirements/build.txt | $(BIN)/python
	$(LOCKED) -r requirements/runtime.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check  # a dependency pyproject gained but the lock lacks
	touch $@

$(VENV)/.installed-dev: requirements/dev.txt requirements/build.txt | $(BIN)/python
	$(LOCKED) -r requirements/dev.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check  # a dependency pyproject gained but the lock lacks
	touch $@ $(VENV)/.installed-runtime

install: $(VENV)/.installed-dev

lint: install
	$(BIN)/ruff check relay sync_publisher tests bench
	# tests/test_model_link.py: its session and sink doubles are checked against their seams.
	$(BIN)/mypy relay sync_publisher tests/test_model_link.py

# The Flex plugin (flex-plugin/, TypeScript): type check, Jest, the bundle and the browser
# test's page. It needs Node.js and npm: without them it is skipped with a note, except in CI.
plugin:
	@if command -v npm >/dev/null; then ./flex-plugin/ci.sh; \
	elif [ -n "$$CI" ]; then echo "npm is needed for the Flex plugin's checks" >&2; exit 1; \
	else echo "npm not found: the Flex plugin's checks are skipped (install Node.js 20 and npm)"; fi

# -rs: a skipped test always says why.
test: lint plugin
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

# Drift found on purpose: recompile every lock at the newest versions pyproject allows (in a
# tools venv of its own), then install them and run the whole suite. Commit the locks if green.
LOCK_VENV ?= .venv-lock
COMPILE = $(LOCK_VENV)/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet 'pip-tools>=7.4,<8'
	$(COMPILE) -o requirements/build.txt requirements/build.in
	$(COMPILE) -o requirements/runtime.txt pyproject.toml requirements/build.in
	$(COMPILE) --extra test --extra bench --extra offline -o requirements/dev.txt pyproject.toml requirements/build.in

test-latest: lock
	$(MAKE) test

clean:
	rm -rf $(VENV) $(LOCK_VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
