"""`make test-fast` runs tests/unit with no services; `make test` still stops loudly when one is down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import plugin

ROOT = Path(__file__).resolve().parent.parent.parent
UNUSED_PLUGINS = ("-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:cacheprovider")


def pytest_run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BROKER_URL", "TEST_DATABASE_NAME"}}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *UNUSED_PLUGINS, "-q", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_without_services_refuses_a_test_outside_tests_unit_before_running_any():
    done = pytest_run("tests/integration/test_sql.py", "tests/unit/test_logging.py", SAGAFLOW_TEST_SERVICES="none")

    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:] + done.stderr[-2000:]
    assert "these do (run them with `make test`)" in done.stderr
    assert "tests/integration/test_sql.py::" in done.stderr
    assert "tests/unit/test_logging.py::" not in done.stderr
    assert " passed" not in done.stdout


def test_a_run_with_services_stops_loudly_when_postgresql_cannot_be_reached():
    done = pytest_run(
        "tests/unit/test_logging.py", SAGAFLOW_TEST_SERVICES="required", TEST_POSTGRES_URL="postgres://root@127.0.0.1:1"
    )

    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:] + done.stderr[-2000:]
    assert "PostgreSQL at postgres://root@127.0.0.1:1 cannot be reached" in done.stderr
    assert " passed" not in done.stdout


def test_an_unknown_services_mode_is_refused_by_name():
    done = pytest_run("tests/unit/test_logging.py", SAGAFLOW_TEST_SERVICES="sometimes")

    assert done.returncode != 0
    assert "SAGAFLOW_TEST_SERVICES must be 'required' or 'none', got 'sometimes'" in done.stderr


def test_a_unit_test_needs_services_once_it_asks_for_the_database(request):
    assert not plugin.needs_services(request.node)

    request.node.add_marker(pytest.mark.django_db)

    assert plugin.needs_services(request.node)
