# Two commands on a fresh clone with only Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test bench lint clean postgres-server chromium

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/catalog-ops demo

test: $(INSTALLED) postgres-server chromium
	$(BIN)/ruff check .
	$(BIN)/python -m tests.security.dependency_audit
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(INSTALLED)
	$(BIN)/python -m bench.run

lint: $(INSTALLED)
	$(BIN)/ruff check .

# Debian's PostgreSQL server, for the production-instance test (tests/deploy): installed when missing.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# Debian's Chromium, which Playwright drives in the browser test (tests/ui): installed when missing.
chromium:
	@[ -x /usr/bin/chromium ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV) .dagster_home var .pytest_cache .ruff_cache
