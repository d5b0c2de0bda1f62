# The two commands of the Quick start, plus the checks. Each target sets up .venv itself,
# so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck check serve clean postgres-server

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/incident-bot demo

# Several worker processes (pytest-xdist), each test module kept on one worker so its module-scoped
# bot starts once. Most tests wait on sockets and subprocesses, so 4 workers suit even 2 cores.
TEST_WORKERS ?= 4
test: $(STAMP) postgres-server
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

# The tests start a throwaway PostgreSQL server themselves (tests/pg.py: initdb + pg_ctl in a
# temporary directory); this only makes sure the server's programs are installed.
postgres-server:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "PostgreSQL's initdb/pg_ctl are missing: installing Debian's postgresql package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
			|| echo "*** could not install postgresql: the PostgreSQL tests will be SKIPPED ***"; \
	else \
		echo "*** PostgreSQL's initdb/pg_ctl are missing and cannot be installed here (needs root and apt-get):"; \
		echo "*** install the postgresql package (or set PG_BIN), else the PostgreSQL tests are SKIPPED ***"; \
	fi

# Every benchmark, each against its baseline in the same run (README: Performance). Minutes, CPU-heavy.
bench: $(STAMP)
	$(BIN)/python bench/ack_latency.py
	$(BIN)/python bench/time_to_page.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/diagnose.py
	$(BIN)/python bench/multi_instance.py
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/storm.py
	$(BIN)/python bench/alert_flood.py
	$(BIN)/python bench/pagerduty_down.py

# ruff, then the import contract (pyproject.toml [tool.importlinter]: imports point down the layers).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy bot commands

check: lint typecheck test

serve: $(STAMP)
	$(BIN)/incident-bot serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
