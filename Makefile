# Two commands: `make run` (install and start the embedded default) and `make test` (install
# everything the tests need, then lint, type check and run the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

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
	$(PY) -m compileall -q src
	$(VENV)/bin/cardsms serve

# System packages the tests need: PostgreSQL's server binaries (the harness starts a real server),
# Debian's Net::SMPP (the interop test's SMSC), Debian's chromium (Playwright drives it; no browser
# downloads) and CJK fonts. Installed via apt when missing.
system-deps:
	@missing=""; \
	if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		missing="$$missing postgresql"; fi; \
	if ! perl -MNet::SMPP -e 1 >/dev/null 2>&1; then missing="$$missing libnet-smpp-perl"; fi; \
	if ! ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1; then missing="$$missing fonts-noto-cjk"; fi; \
	if ! command -v chromium >/dev/null 2>&1; then missing="$$missing chromium"; fi; \
	if [ -n "$$missing" ]; then \
		echo "installing via apt:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Alibaba's official Node.js SDK, exactly as pinned in tests/node/package-lock.json, from the npm registry
# (node and npm come with the machine; apt installs them when missing).
tests/node/node_modules/.installed: tests/node/package.json tests/node/package-lock.json
	@command -v npm >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm)
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test-deps: $(VENV)/.test-installed system-deps tests/node/node_modules/.installed

lint: test-deps
	$(VENV)/bin/ruff check src tests bench

typecheck: test-deps
	$(VENV)/bin/mypy

# The suite runs in parallel: one pytest-xdist worker per core plus one, each with its own servers and its own
# PostgreSQL cluster (session fixtures are per worker), an idle worker taking tests queued for a busy one (worksteal:
# the long fault tests no longer end the run alone); the 30 slowest tests are printed at the end.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
# Bytecode first: the suite starts hundreds of `cardsms` processes, and where PYTHONDONTWRITEBYTECODE is set (as on
# this kind of machine) each would compile every module of src/ again (~0.2 s of CPU a process).
test: lint typecheck
	$(PY) -m compileall -q src tests bench
	$(VENV)/bin/pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal --durations=30

# Benchmarks (loopback only; about 18 minutes on 2 cores): prints a table, writes bench/results.json.
# Debian's wrk drives the link opens; Debian's kannel (bearerbox + smsbox) and Jasmin (with Debian's rabbitmq-server
# and redis-server, started by the bench in a temporary directory) are the peer gateways.
# Jasmin, the second peer gateway, in a virtual environment of its own (it pins its own Twisted); 0.11.0, because
# 0.11.1 maps no receipt (bench/jasmin.py says why).
JASMIN_VENV ?= .venv-jasmin
$(JASMIN_VENV)/.installed:
	$(PYTHON) -m venv $(JASMIN_VENV)
	$(JASMIN_VENV)/bin/python -m pip install --quiet jasmin==0.11.0
	touch $@

bench: test-deps $(JASMIN_VENV)/.installed
	@missing=""; command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v bearerbox >/dev/null 2>&1 || missing="$$missing kannel"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$$missing rabbitmq-server"; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(PY) bench/run.py

docs-errors: venv
	$(PY) -m cardsms.domain.errors > docs/errors.md

clean:
	rm -rf $(VENV) $(JASMIN_VENV) var .pytest_cache .mypy_cache .ruff_cache
