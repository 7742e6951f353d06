# hystrix-actors: every target sets itself up (creates .venv, installs the project with its dev extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOAK_SECONDS ?= 300

.PHONY: setup test lint typecheck unit demo bench clean soak

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check actors supervision tests examples benchmarks
	$(BIN)/ruff format --check actors supervision tests examples benchmarks

typecheck: setup
	$(BIN)/mypy --strict actors supervision

unit: setup
	$(BIN)/pytest

test: lint typecheck unit

demo: setup
	$(BIN)/python examples/jira_issues.py

bench: setup
	$(BIN)/python -m benchmarks

# The chaos harness under load for SOAK_SECONDS; writes docs/reliability.md, fails on any broken
# invariant.
soak: setup
	$(BIN)/python -m tests.chaos.soak --seconds $(SOAK_SECONDS) --write docs/reliability.md

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
