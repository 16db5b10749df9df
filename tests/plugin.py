"""Gives each test run its own PostgreSQL database and RabbitMQ vhost, and removes them afterwards.

Loaded with `-p tests.plugin`, before pytest-django reads the settings, so the settings see this run's
names. The services are required: when one cannot be reached, the run stops at once, loudly.

With pytest-xdist (`make test` runs `-n 2`) each worker process imports this plugin, so each has its own run id,
database and vhost; the controller, which runs no test, makes neither.

`SAGAFLOW_TEST_SERVICES=none` (`make test-fast`) is the one exception: the settings get no DATABASE_URL and
no BROKER_URL (the embedded SQLite settings), nothing is checked or created, and the run refuses, before
any test runs, every test that is outside tests/unit or asks for a database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

RUN_ID = uuid.uuid4().hex[:10]
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432")
AMQP_SERVER = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
TEST_DATABASE = f"sagaflow_test_{RUN_ID}"
# pytest-django puts an xdist worker's id after the name of its test database (sagaflow_test_..._gw0).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
DATABASE_IN_USE = f"{TEST_DATABASE}_{XDIST_WORKER}" if XDIST_WORKER else TEST_DATABASE
TEST_VHOST = f"sagaflow_test_{RUN_ID}"
UNIT_TESTS = Path(__file__).resolve().parent / "unit"
# pytest-django's fixtures that give a test a database, or a server that needs one.
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "live_server",
}
VHOST_CREATED = pytest.StashKey[bool]()


def _services_mode() -> str:
    mode = os.environ.get("SAGAFLOW_TEST_SERVICES", "") or "required"
    if mode not in {"required", "none"}:
        raise pytest.UsageError(f"SAGAFLOW_TEST_SERVICES must be 'required' or 'none', got {mode!r}")
    return mode


WITHOUT_SERVICES = _services_mode() == "none"

if WITHOUT_SERVICES:
    # Whatever the shell says, a run without services must not reach one.
    for name in ("DATABASE_URL", "BROKER_URL", "TEST_DATABASE_NAME"):
        os.environ.pop(name, None)
else:
    os.environ["DATABASE_URL"] = f"{PG_SERVER}/postgres"
    os.environ["TEST_DATABASE_NAME"] = TEST_DATABASE
    os.environ["BROKER_URL"] = f"{AMQP_SERVER}/{TEST_VHOST}"
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault("LOG_LEVEL", "warning")
os.environ.setdefault("MESSAGING_RETRY_BASE_S", "0.2")
# With DATABASE_URL set the settings refuse the development key; the processes the tests start inherit this one.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# The tests' own process looks every token and webhook endpoint up: its tests change them in transactions that
# never commit, so no notice would tell a listener, and a listener's connection would keep the test database from
# being dropped. The tests of what is kept turn it on (tests/api/test_recent_tokens.py,
# tests/integration/test_kept_endpoints.py); the processes the tests start keep the product's default
# (tests/processes.py).
IN_PROCESS_ONLY = {"API_TOKEN_CACHE_S": "0", "WEBHOOK_ENDPOINTS_CACHE_S": "0"}
os.environ.update(IN_PROCESS_ONLY)


def worker_database_url() -> str:
    """The URL of this run's test database, for the processes the tests start."""
    return f"{PG_SERVER}/{DATABASE_IN_USE}"


def rabbitmqctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        raise pytest.UsageError("rabbitmqctl is not installed: the tests need RabbitMQ on this machine")
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise pytest.UsageError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")


def _check_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5).close()
    except psycopg.Error as error:
        raise pytest.UsageError(f"PostgreSQL at {PG_SERVER} cannot be reached: {error}") from None


def add_vhost(name: str) -> str:
    """Create a vhost guest may use; returns its broker URL."""
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"{AMQP_SERVER}/{name}"


def delete_vhost(name: str) -> None:
    try:
        rabbitmqctl("delete_vhost", name)
    except pytest.UsageError as error:
        print(f"warning: {error}")


def needs_services(item: pytest.Item) -> bool:
    """Whether a test needs PostgreSQL or RabbitMQ: it is outside tests/unit, or asks for a database."""
    if not Path(item.path).resolve().is_relative_to(UNIT_TESTS):
        return True
    return item.get_closest_marker("django_db") is not None or bool(DATABASE_FIXTURES & set(item.fixturenames))


def _flush_by_delete() -> None:
    """After each transactional test pytest-django empties every table. PostgreSQL's TRUNCATE of the thirty
    near-empty tables takes 0.6 to 0.9 s (it makes new files for each), DELETE takes 20 to 40 ms, and hundreds of
    tests pay it: empty them with DELETE, in the one transaction Django's flush runs in, the foreign keys (all
    deferrable, as Django makes them) checked at its commit. A flush that must restart the sequences keeps
    TRUNCATE ... RESTART IDENTITY."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or not tables:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET CONSTRAINTS ALL DEFERRED;"] + [f"DELETE FROM {self.quote_name(table)};" for table in tables]

    DatabaseOperations.sql_flush = sql_flush


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if WITHOUT_SERVICES:
        return
    _check_postgres()
    if _is_xdist_controller(config):
        return
    _flush_by_delete()
    add_vhost(TEST_VHOST)
    config.stash[VHOST_CREATED] = True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not WITHOUT_SERVICES:
        return
    refused = [item.nodeid for item in items if needs_services(item)]
    if refused:
        shown = "\n  ".join(refused[:10]) + (f"\n  ... and {len(refused) - 10} more" if len(refused) > 10 else "")
        raise pytest.UsageError(
            "SAGAFLOW_TEST_SERVICES=none runs only tests that need no database and no "
            f"broker, and these do (run them with `make test`):\n  {shown}"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    # Not when the run stopped before making it: rabbitmqctl would only take seconds to say so.
    if config.stash.get(VHOST_CREATED, False):
        delete_vhost(TEST_VHOST)
