"""The tokens a web process has looked up, kept for as long as it hears of every change to them.

Every API request presents its token, and its lookup was a statement of its own beside a status read's one, and
a third of that read's CPU. A process keeps each live token it has looked up for API_TOKEN_CACHE_S, but only
while its listener hears PostgreSQL's notices: a trigger (migration config 0004) sends one at the commit of any
revocation, change or deletion of a token, whoever made it (the command, the admin, an operator's SQL), and the
listener forgets that token at once. The listener asks the database for an answer every PROBE_S; once it has
had none for TRUST_S (a connection lost, or gone silent), the process trusts none of what it kept and looks every
token up until it hears again, on a new connection, with what it kept dropped. A revocation therefore takes
effect in every process as soon as its notice arrives, and within TRUST_S if the notice is lost with the
listener's connection. A request does not trust what was kept while something waits unread on the listener's
socket: a notice that has arrived counts before the listener's thread has read it. A database that sends no
notices (SQLite) keeps nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from config.kernel.postgresql.base import listening, unread

logger = logging.getLogger(__name__)

CHANNEL = "sagaflow_api_token"  # the trigger's; its payload is the token's hash, or "*" for all of them
PROBE_S = 1.0
TRUST_S = 2.5
MAX_KEPT = 4096


class RecentTokens:
    """The live tokens looked up lately, by hash, each with when it was looked up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[float, Any]] = {}
        # Moved on by every change of what is known: a lookup begun before it may not keep what it read.
        self._generation = 0
        self._heard_at: float | None = None  # time.monotonic() of the database's last answer to the listener
        self._socket: int | None = None  # the listener's, while it listens

    def listening_on(self, socket: int | None) -> None:
        self._socket = socket

    def _notice_waiting(self) -> bool:
        """Whether something has come to the listener that it has not read yet: a notice may be on its way, so
        what was kept is not trusted for this request (one poll of a socket, no round trip)."""
        fd = self._socket
        return fd is not None and unread(fd)

    def trusted(self) -> bool:
        heard_at = self._heard_at
        return heard_at is not None and time.monotonic() - heard_at <= TRUST_S

    def get(self, digest: str) -> Any | None:
        found = self._records.get(digest)
        if found is None or not self.trusted() or time.monotonic() - found[0] > settings.API_TOKEN_CACHE_S:
            return None
        return None if self._notice_waiting() else found[1]

    def generation(self) -> int:
        return self._generation

    def keep(self, digest: str, record: Any, generation: int) -> None:
        """Keep `record`, read by a lookup that began at `generation`, unless anything changed since."""
        with self._lock:
            if generation != self._generation or not self.trusted():
                return
            if len(self._records) >= MAX_KEPT:
                self._records.clear()
            self._records[digest] = (time.monotonic(), record)

    def forget(self, digest: str) -> None:
        """Forget one token ("*": all of them): it was revoked or changed."""
        with self._lock:
            self._generation += 1
            if digest == "*":
                self._records.clear()
            else:
                self._records.pop(digest, None)

    def hearing(self, since_new_connection: bool = False) -> None:
        """The database has just answered the listener. On a new connection, what was kept is dropped: notices
        sent while no connection listened are lost."""
        with self._lock:
            if since_new_connection:
                self._generation += 1
                self._records.clear()
            self._heard_at = time.monotonic()

    def deaf(self) -> None:
        """The listener has no connection: keep nothing."""
        with self._lock:
            self._generation += 1
            self._records.clear()
            self._heard_at = None


class RevocationListener:
    """The thread of a process that LISTENs for the trigger's notices and tells `tokens`. Started by the first
    lookup of each process (a forked child starts its own), only where notices are sent and tokens are kept."""

    def __init__(self, tokens: RecentTokens) -> None:
        self.tokens = tokens
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backend_pid: int | None = None  # of its connection's server process, while it has one

    def ensure_running(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self.tokens.deaf()  # what a parent process kept is not this one's to trust
            self._pid = os.getpid()
            if settings.API_TOKEN_CACHE_S <= 0 or connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
                self._thread = None
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="sagaflow-tokens", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and keep nothing; the next lookup starts it again."""
        with self._lock:
            self._stop.set()
            thread, self._thread, self._pid = self._thread, None, None
        if thread is not None:
            thread.join(timeout=PROBE_S + 5)
        self.tokens.deaf()

    def _run(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            conn = None
            try:
                conn = listening(connections[DEFAULT_DB_ALIAS], CHANNEL)
                self.backend_pid = conn.info.backend_pid
                self.tokens.listening_on(conn.pgconn.socket)
                self.tokens.hearing(since_new_connection=True)
                delay = 0.5
                while not stop.is_set():
                    for notice in conn.notifies(timeout=PROBE_S):
                        self.tokens.forget(notice.payload)
                    conn.execute("SELECT 1")  # notices that arrive meanwhile wait for the next notifies()
                    self.tokens.hearing()
            except Exception as error:  # noqa: BLE001 - any failure: keep nothing, and listen again
                self.tokens.deaf()
                logger.warning(
                    "the API token listener lost its database connection (%s: %s); every request looks its token "
                    "up until it is back, in %.1fs",
                    type(error).__name__,
                    error,
                    delay,
                )
            finally:
                self.backend_pid = None
                self.tokens.listening_on(None)
                if conn is not None:
                    conn.close()
            stop.wait(delay)
            delay = min(delay * 2, 10.0)


recent_tokens = RecentTokens()
listener = RevocationListener(recent_tokens)
