# hystrix-actors: every target sets itself up (creates .venv, installs the project with its dev
# extra; `make demo` installs only the core and the demo extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
FLEET_DEMO_STAMP := $(VENV)/.fleet-demo-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check
SOAK_SECONDS ?= 300

.PHONY: setup test lint typecheck unit docs package demo fleet-demo bench clean soak

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo needs only the core and its extra: no pip upgrade, no dev toolchain.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

# The fleet demo also needs the redis extra (redis-py), and Debian's redis-server unless
# REDIS_URL names a Redis to use.
$(FLEET_DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -e '.[demo,redis]'
	touch $(FLEET_DEMO_STAMP)

lint: setup
	$(BIN)/ruff check actors supervision tests examples benchmarks
	$(BIN)/ruff format --check actors supervision tests examples benchmarks
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy --strict actors supervision

unit: setup
	$(BIN)/pytest

# The documentation site (mkdocs.yml): any warning fails. Built into site/ (ignored by git).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# The sdist and the wheel, built as for a release into a temporary directory, checked as PyPI
# would (twine check --strict: metadata and the README's rendering) and for the files a wheel
# must ship.
package: setup
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	echo "python -m build --outdir $$tmp" && $(BIN)/python -m build --quiet --outdir "$$tmp" . && \
	echo "twine check --strict" && $(BIN)/twine check --strict "$$tmp"/* && \
	echo "the wheel's files" && $(BIN)/python -c "$$WHEEL_CHECK" "$$tmp"/*.whl

export WHEEL_CHECK
define WHEEL_CHECK
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
wanted = {"actors/py.typed", "supervision/py.typed", "actors/dashboard/index.html"}
missing = sorted(wanted - names)
licenses = [name for name in names if "/licenses/" in name]
if missing or not licenses:
    sys.exit(f"{sys.argv[1]}: missing {missing or 'the LICENSE'}")
endef

test: lint typecheck unit docs package

demo: $(DEMO_STAMP)
	$(BIN)/python examples/jira_issues.py

# Three processes share one circuit through Redis while a fake JIRA goes down and recovers.
fleet-demo: $(FLEET_DEMO_STAMP)
	$(BIN)/python examples/fleet.py

bench: setup
	$(BIN)/python -m benchmarks

# The chaos harness under load for SOAK_SECONDS; writes docs/reliability.md, fails on any broken
# invariant.
soak: setup
	$(BIN)/python -m tests.chaos.soak --seconds $(SOAK_SECONDS) --write docs/reliability.md

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site dist
