# Flöde: `make run` starts the server with demo data; `make test` installs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A real FHIR Bulk Data client (npm) for the export tests, pinned in tests/bulk/client.
NODE_DIR := .node
NODE_STAMP := $(NODE_DIR)/.installed
NODE_CLIENT := tests/bulk/client

.PHONY: run test lint typecheck unit bench definitions clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (with Node.js 20.19+) is needed for the Bulk Data client test in tests/bulk"; exit 1; }
	mkdir -p $(NODE_DIR)
	cp $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: $(STAMP)
	$(BIN)/flode serve

test: $(STAMP) $(NODE_STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Regenerate the bundled compact definitions from ../shared/fhir-r4 (not needed at run time).
definitions: $(STAMP)
	$(BIN)/python tools/generate_definitions.py ../shared/fhir-r4 src/flode/fhir/definitions

clean:
	rm -rf $(VENV) $(NODE_DIR) .pytest_cache .mypy_cache .ruff_cache
