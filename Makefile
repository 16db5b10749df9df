PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: install run test test-fast lint bench clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

run: install
	@$(BIN)/python scripts/run.py

# Every test, against the real PostgreSQL and RabbitMQ: the run stops at once, loudly, if either is down.
test: install
	SAGAFLOW_TEST_SERVICES=required $(BIN)/python -m pytest $(PYTEST_ARGS)

# tests/unit alone, with no database and no broker (the embedded settings). The plugins that only the API
# fuzz tests use stay unloaded: importing them is most of the start-up time.
test-fast: install
	SAGAFLOW_TEST_SERVICES=none $(BIN)/python -m pytest -p no:schemathesis -p no:hypothesispytest -p no:anyio \
		tests/unit $(PYTEST_ARGS)

# ruff (lint, then format) and mypy, with their settings in pyproject.toml. Not yet part of `make test`:
# the code has not been formatted or type-checked with them so far.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles
