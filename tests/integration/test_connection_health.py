"""CONN_HEALTH_CHECKS without a round trip while a kept connection is quiet (config/kernel/postgresql/base.py):
a connection the server has closed is still replaced before a request's first query, as Django's own check
replaces it, and the request does not fail."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator

import pytest
from django.db import connection

from config.kernel.postgresql.base import DatabaseWrapper

pytestmark = pytest.mark.django_db


@pytest.fixture
def database() -> Iterator[DatabaseWrapper]:
    """A kept connection to the test database, with the settings' health checks, as a web thread keeps one."""
    database = DatabaseWrapper({**connection.settings_dict})
    try:
        database.ensure_connection()
        assert database.settings_dict["CONN_HEALTH_CHECKS"] and database.settings_dict["CONN_MAX_AGE"]
        yield database
    finally:
        database.close()


def backend_pid(database: DatabaseWrapper) -> int:
    with database.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def next_request(database: DatabaseWrapper) -> None:
    # What Django does at the start of each request (request_started): the next query checks the connection.
    database.close_if_unusable_or_obsolete()
    assert not database.health_check_done


def readable(database: DatabaseWrapper, what: str) -> None:
    socket = database.connection.pgconn.socket
    deadline = time.monotonic() + 10
    while not select.select([socket], [], [], 0.05)[0]:
        assert time.monotonic() < deadline, what


def counting_checks(database: DatabaseWrapper, monkeypatch) -> list[bool]:
    checked: list[bool] = []
    real = database.is_usable

    def is_usable() -> bool:
        checked.append(True)
        return real()

    monkeypatch.setattr(database, "is_usable", is_usable)
    return checked


def test_a_quiet_kept_connection_is_used_without_a_round_trip_to_check_it(database, monkeypatch):
    first = backend_pid(database)
    checked = counting_checks(database, monkeypatch)

    next_request(database)

    assert backend_pid(database) == first
    assert checked == [] and database.health_check_done


def test_a_kept_connection_the_server_closed_is_replaced_before_the_next_requests_first_query(database):
    first = backend_pid(database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    readable(database, "the server did not close the connection")

    next_request(database)

    assert backend_pid(database) != first  # a new connection, and no error
    assert database.health_check_done


def test_a_connection_with_something_to_read_gets_djangos_round_trip(database, monkeypatch):
    backend_pid(database)
    with database.cursor() as cursor:
        cursor.execute("LISTEN sagaflow_test_health")
    other = DatabaseWrapper({**connection.settings_dict})  # in autocommit: the test's own connection is not
    try:
        with other.cursor() as cursor:
            cursor.execute("NOTIFY sagaflow_test_health")
    finally:
        other.close()
    readable(database, "the notification did not arrive")
    checked = counting_checks(database, monkeypatch)

    next_request(database)
    backend_pid(database)

    assert checked == [True]
