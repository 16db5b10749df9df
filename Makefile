PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: install run test test-fast lint bench bench-dbos clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

run: install
	@$(BIN)/python scripts/run.py

# The lint first (it fails in seconds), then every test, against the real PostgreSQL and RabbitMQ: the run stops
# at once, loudly, if either is down. Most tests wait on processes and timeouts more than they use a core, so
# TEST_WORKERS pytest-xdist workers run them side by side, each with its own database and vhost; then the tests
# marked `exclusive` (they stop the broker every worker shares) run alone. Exit status 5 is "no test selected":
# PYTEST_ARGS may pick none of the exclusive ones. A marker expression of one's own goes in TEST_MARKERS, not in
# PYTEST_ARGS: a second -m would replace the one that keeps the exclusive tests out of the parallel run.
TEST_WORKERS ?= 2
TEST_MARKERS ?=
and_markers = $(if $(strip $(TEST_MARKERS)), and ($(TEST_MARKERS)))
test: lint
	SAGAFLOW_TEST_SERVICES=required $(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not exclusive$(and_markers)" $(PYTEST_ARGS)
	SAGAFLOW_TEST_SERVICES=required $(BIN)/python -m pytest -m "exclusive$(and_markers)" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The lint, then tests/unit alone, with no database and no broker (the embedded settings). The plugins that
# only the API fuzz tests use stay unloaded: importing them is most of the start-up time.
test-fast: lint
	SAGAFLOW_TEST_SERVICES=none $(BIN)/python -m pytest -p no:schemathesis -p no:hypothesispytest -p no:anyio \
		tests/unit $(PYTEST_ARGS)

# ruff (lint, then format) and mypy, with their settings in pyproject.toml; `make test` and `make test-fast`
# run it before any test, so that CI (.ci/run) does too. mypy keeps its cache in .mypy_cache: ten seconds or so
# the first time, one after.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# The same saga on DBOS Transact, measured by the same harness, in a virtualenv of its own.
DBOS_VENV := .venv-dbos
$(DBOS_VENV)/bin/.installed: scripts/benchmark/alternatives/requirements-dbos.txt
	$(PYTHON) -m venv $(DBOS_VENV)
	$(DBOS_VENV)/bin/pip install --quiet -r scripts/benchmark/alternatives/requirements-dbos.txt
	touch $@

bench-dbos: install $(DBOS_VENV)/bin/.installed
	$(BIN)/python scripts/bench.py --system dbos $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DBOS_VENV) db.sqlite3 db.sqlite3-* staticfiles .mypy_cache .ruff_cache
