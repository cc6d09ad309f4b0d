# The two commands of the README: `make demo` (end to end on SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pytest processes of `make test` (pytest-xdist); CI has 2 cores.
PYTEST_WORKERS ?= 2

.PHONY: install demo test lint typecheck bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on disk; later ranges are satisfied by it.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[server,test]'
	touch $@

install: $(BIN)/.installed

# `make demo PORT=8001` when 8000 is taken.
PORT ?= 8000
demo: install
	$(BIN)/gpnas demo --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The four packages, as configured in pyproject.toml ([tool.mypy]); about 40 s cold on 2 cores,
# about 1 s with the incremental cache (.mypy_cache) of an earlier run.
typecheck: install
	$(BIN)/mypy

test: install
	./scripts/ensure_services.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

# The scripts run as modules of the benchmarks package (python -m benchmarks.NAME, from here); the
# `bench` extra adds what only they need (pymoo, for python -m benchmarks.fronts).
bench: install
	$(BIN)/python -m pip install -q -e '.[server,bench]'
	$(BIN)/python -m benchmarks.predictors
	$(BIN)/python -m benchmarks.search

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
