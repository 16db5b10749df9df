"""Django's PostgreSQL backend, with a bound on every wait for the server's answer.

libpq has no timeout for an answer of its own. A server, or a proxy or load balancer in front of it, that keeps
the TCP connection open but never answers would keep a thread waiting for ever: TCP keepalives see a peer that
acknowledges, and statement_timeout is the server's, which is the one not answering. Past
DATABASE_ANSWER_TIMEOUT_S the wait gives up, the connection is closed (what it was in the middle of is
unknown), and the caller gets an OperationalError, which Django handles as a lost connection.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg._queries
from django.conf import settings
from django.db.backends.postgresql import base

# psycopg keeps the conversion of a statement's `%s` placeholders for the next time it runs (an LRU of 128),
# but only for a statement of at most 50 parameters. The one statement that places an order (sql.batched) has
# about 75, and converting it again at each POST was a tenth of the POST's CPU. The conversion depends on the
# statement's text alone; psycopg's other bound, statements of at most 4 KiB, stays. (A private name of
# psycopg's: tests/unit/test_database_backend.py says when a version no longer has it.)
MAX_CACHED_STATEMENT_PARAMS = 1000
psycopg._queries.MAX_CACHED_STATEMENT_PARAMS = max(
    psycopg._queries.MAX_CACHED_STATEMENT_PARAMS, MAX_CACHED_STATEMENT_PARAMS
)


class AnswerBoundConnection(psycopg.Connection):
    """A psycopg connection whose every wait for the server ends within DATABASE_ANSWER_TIMEOUT_S."""

    unbounded = False  # set by statements_unbounded() for an operator's command

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        bound = settings.DATABASE_ANSWER_TIMEOUT_S if timeout is None and not self.unbounded else None
        try:
            return super().wait(gen, interval=interval, timeout=bound or timeout)
        except psycopg.errors._WaitTimeout:
            if not bound:
                raise
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {bound:g}s (DATABASE_ANSWER_TIMEOUT_S); the connection is closed"
            ) from None


def listening(database: Any, *channels: str) -> AnswerBoundConnection:
    """A connection of its own to `database`'s server (a Django connection), in autocommit, with the timeouts and
    keepalives of the settings and the bound on each answer, that LISTENs on `channels`."""
    params = database.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    conn = AnswerBoundConnection.connect(**params, autocommit=True)
    try:
        for channel in channels:
            conn.execute(f"LISTEN {channel}")
    except BaseException:
        conn.close()
        raise
    return conn


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> psycopg.Connection:
        connection = super().get_new_connection(conn_params)
        # Django connects through psycopg.connect and offers no way to name the class; this one only adds the
        # bound to `wait`, and has the same layout.
        connection.__class__ = AnswerBoundConnection
        return connection

    def close_if_health_check_failed(self) -> None:
        """CONN_HEALTH_CHECKS, as Django does it, but without a round trip while the connection is quiet.

        Django checks a kept connection before a request's first query with a `SELECT 1`: 80 us of CPU, a tenth
        of a status read's. A connection that the server has closed (a restart, pg_terminate_backend, an idle
        timeout) has the server's last words and the end of the stream to read; one that TCP keepalives found
        dead has its error. Nothing else comes unasked on an idle connection that listens to no channel. So a
        connection that is idle, sound as libpq sees it, and has nothing to read is taken as it is; any other
        gets Django's round trip, and is replaced when that fails."""
        # (django-stubs leave out health_check_enabled, health_check_done and pool.)
        due = getattr(self, "health_check_enabled", False) and not getattr(self, "health_check_done", True)
        if due and self.connection is not None and not getattr(self, "pool", None) and _quiet(self.connection):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()


def _quiet(connection: psycopg.Connection) -> bool:
    """Whether the connection is idle, sound, and has nothing from the server waiting to be read."""
    pgconn = connection.pgconn
    if pgconn.status != psycopg.pq.ConnStatus.OK or pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        return not unread(pgconn.socket)
    except psycopg.Error:
        return False


def unread(socket: int) -> bool:
    """Whether something waits unread on `socket` (a file descriptor), without waiting; True when that cannot
    be told (no poll() on this platform, a closed descriptor)."""
    if not hasattr(select, "poll"):
        return True
    try:
        poller = select.poll()
        poller.register(socket, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


@contextmanager
def statements_unbounded(database: Any) -> Iterator[None]:
    """No statement timeout and no answer bound on `database`'s connection (a Django connection) while inside.

    For the commands an operator runs and watches (migrate, the audit), whose statements on a large database
    (an index built concurrently, a sum over every movement) take longer than the bound that protects the
    request and message paths. Another backend (SQLite) has neither bound: nothing to lift.
    """
    if database.vendor != "postgresql":
        yield
        return
    database.ensure_connection()
    lifted = database.connection
    with database.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
    lifted.unbounded = True
    try:
        yield
    finally:
        lifted.unbounded = False
        if database.connection is lifted and not lifted.closed:
            try:
                with database.cursor() as cursor:
                    cursor.execute("RESET statement_timeout")  # back to the connection's own option
            except psycopg.Error:
                database.close()  # a connection whose timeout is unknown is not kept
