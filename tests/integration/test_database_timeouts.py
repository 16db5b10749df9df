"""A database that keeps its TCP connection open but never answers does not hold a thread for ever: every wait
for an answer gives up after DATABASE_ANSWER_TIMEOUT_S, and connecting after DATABASE_CONNECT_TIMEOUT_S.

The fault proxy stands between the test and PostgreSQL: when silent, its kernel still acknowledges every byte,
so neither TCP keepalives nor the server's statement_timeout can help.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.db.models.signals import pre_migrate

from config.kernel.postgresql.base import DatabaseWrapper, statements_unbounded
from tests.e2e.faultproxy import FaultProxy

pytestmark = pytest.mark.django_db


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy(int(connection.settings_dict["PORT"] or 5432), connection.settings_dict["HOST"]) as proxy:
        yield proxy


def through(proxy: FaultProxy) -> DatabaseWrapper:
    """A connection to the test database, as Django makes it from the settings, through the proxy."""
    settings_dict = {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": str(proxy.port)}
    settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], "connect_timeout": 2}
    return DatabaseWrapper(settings_dict)


def timed(query) -> tuple[float, Exception | None]:
    started = time.monotonic()
    try:
        query()
    except Exception as error:  # noqa: BLE001 - returned for the test to look at
        return time.monotonic() - started, error
    return time.monotonic() - started, None


def select_one(database: DatabaseWrapper) -> None:
    with database.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_a_query_the_database_never_answers_fails_after_the_answer_timeout_and_the_connection_is_closed(
    proxy, settings
):
    settings.DATABASE_ANSWER_TIMEOUT_S = 1.5
    database = through(proxy)
    try:
        select_one(database)  # a sound connection first

        proxy.silent()
        took, error = timed(lambda: select_one(database))

        assert isinstance(error, OperationalError) and "did not answer within 1.5s" in str(error)
        assert 1.4 < took < 4
        assert database.connection.closed
        assert not database.is_usable()
    finally:
        database.close()


def test_a_transaction_whose_commit_is_never_answered_fails_after_the_answer_timeout(proxy, settings):
    settings.DATABASE_ANSWER_TIMEOUT_S = 1.5
    database = through(proxy)
    try:
        database.set_autocommit(False)
        select_one(database)

        proxy.silent()
        took, error = timed(database.commit)

        assert isinstance(error, OperationalError) and 1.4 < took < 4
    finally:
        database.close()


def test_connecting_to_a_database_that_never_answers_fails_after_the_connect_timeout(proxy):
    proxy.silent()
    database = through(proxy)

    took, error = timed(database.ensure_connection)

    assert isinstance(error, OperationalError)
    assert took < 6


def with_statement_timeout(ms: int) -> DatabaseWrapper:
    """A connection to the test database whose own options set the server's statement timeout."""
    settings_dict = {**connection.settings_dict}
    settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], "options": f"-c statement_timeout={ms}"}
    return DatabaseWrapper(settings_dict)


def sleep(database: DatabaseWrapper, seconds: float) -> None:
    with database.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


def show_statement_timeout(database: DatabaseWrapper) -> str:
    with database.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_an_operators_command_runs_past_both_bounds_and_the_connection_gets_them_back(settings):
    settings.DATABASE_ANSWER_TIMEOUT_S = 0.5
    database = with_statement_timeout(300)
    try:
        assert isinstance(timed(lambda: sleep(database, 0.6))[1], OperationalError)  # the server cancels it

        with statements_unbounded(database):
            took, error = timed(lambda: sleep(database, 0.8))
            assert error is None and took >= 0.8  # past the server's 300 ms and the client's 500 ms
            assert show_statement_timeout(database) == "0"

        assert show_statement_timeout(database) == "300ms"
        assert not database.connection.unbounded
        assert isinstance(timed(lambda: sleep(database, 0.6))[1], OperationalError)
    finally:
        database.close()


def test_migrate_runs_its_migrations_without_the_statement_timeout():
    seen: list[str] = []

    def record(**kwargs) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            seen.append(cursor.fetchone()[0])

    assert show_statement_timeout(connection) != "0"  # the bound of the test settings
    pre_migrate.connect(record, weak=False)
    try:
        call_command("migrate", verbosity=0)
    finally:
        pre_migrate.disconnect(record)

    assert seen and set(seen) == {"0"}
    assert show_statement_timeout(connection) != "0"
