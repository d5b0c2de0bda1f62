# The two commands of the Quick start, plus the checks. Each target sets up .venv itself,
# so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck check serve clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/incident-bot demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Every benchmark, each against its baseline in the same run (README: Performance). Minutes, CPU-heavy.
bench: $(STAMP)
	$(BIN)/python bench/ack_latency.py
	$(BIN)/python bench/time_to_page.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/diagnose.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy bot commands

check: lint typecheck test

serve: $(STAMP)
	$(BIN)/incident-bot serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
