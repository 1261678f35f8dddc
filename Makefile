# Two commands: `make run` (install and start the embedded default) and `make test` (install
# everything the tests need, then lint, type check and run the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
APT_PACKAGES := postgresql fonts-noto-cjk

.PHONY: run test lint typecheck venv test-deps system-deps bench docs-errors clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/cardsms serve

# PostgreSQL's server binaries are needed by the test harness; install them when initdb is missing.
system-deps:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL server via apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

test-deps: $(VENV)/.test-installed system-deps

lint: test-deps
	$(VENV)/bin/ruff check src tests

typecheck: test-deps
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest -p no:cacheprovider

docs-errors: venv
	$(PY) -m cardsms.domain.errors > docs/errors.md

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
