"""Gives each test run its own PostgreSQL database and RabbitMQ vhost, and removes them afterwards.

Loaded with `-p tests.plugin`, before pytest-django reads the settings, so the settings see this run's
names. The services are required: when one cannot be reached, the run stops at once, loudly.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid

import pytest

RUN_ID = uuid.uuid4().hex[:10]
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432")
AMQP_SERVER = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
TEST_DATABASE = f"sagaflow_test_{RUN_ID}"
TEST_VHOST = f"sagaflow_test_{RUN_ID}"

os.environ["DATABASE_URL"] = f"{PG_SERVER}/postgres"
os.environ["TEST_DATABASE_NAME"] = TEST_DATABASE
os.environ["BROKER_URL"] = f"{AMQP_SERVER}/{TEST_VHOST}"
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault("LOG_LEVEL", "warning")
os.environ.setdefault("MESSAGING_RETRY_BASE_S", "0.2")
# With DATABASE_URL set the settings refuse the development key; the processes the tests start inherit this one.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))


def worker_database_url() -> str:
    """The URL of this run's test database, for the processes the tests start."""
    return f"{PG_SERVER}/{TEST_DATABASE}"


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


def pytest_configure(config: pytest.Config) -> None:
    _check_postgres()
    add_vhost(TEST_VHOST)


def pytest_unconfigure(config: pytest.Config) -> None:
    delete_vhost(TEST_VHOST)
