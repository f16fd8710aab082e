# Flöde: `make run` starts the server with demo data; `make test` installs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench definitions clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/flode serve

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Regenerate the bundled compact definitions from ../shared/fhir-r4 (not needed at run time).
definitions: $(STAMP)
	$(BIN)/python tools/generate_definitions.py ../shared/fhir-r4 src/flode/fhir/definitions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
