"""What a process keeps of rows it has read, for as long as it hears PostgreSQL tell of every change to them.

A trigger NOTIFYs a channel at the commit of any change to the rows (whoever made it: the product, the admin, an
operator's SQL); a `NoticeListener` thread of the process LISTENs there and tells its `KeptWhileHeard`, which
forgets what changed at once. The listener asks the database for an answer every PROBE_S; once it has had none
for TRUST_S (a connection lost, or gone silent), nothing kept is trusted and every caller reads again until the
listener hears again, on a new connection, with what was kept dropped (notices sent meanwhile are lost). A
caller does not trust what was kept while something waits unread on the listener's socket: a notice that has
arrived counts before the listener's thread has read it. A database that sends no notices (SQLite) keeps
nothing.

The API tokens (config/access/recent_tokens.py) and the webhook endpoints (orders/webhooks.py) are kept so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from config.kernel.postgresql.base import listening, unread

logger = logging.getLogger(__name__)

EVERYTHING = "*"  # a notice's payload that forgets all that was kept (a TRUNCATE, or a change of many rows)
PROBE_S = 1.0
TRUST_S = 2.5
MAX_KEPT = 4096


class KeptWhileHeard:
    """Values read lately, by key, each with when it was read; trusted for `max_age_s()` at most, and only while
    the listener hears the database."""

    def __init__(self, max_age_s: Callable[[], float]) -> None:
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._records: dict[str, tuple[float, Any]] = {}
        # Moved on by every change of what is known: a read begun before it may not keep what it read.
        self._generation = 0
        self._heard_at: float | None = None  # time.monotonic() of the database's last answer to the listener
        self._socket: int | None = None  # the listener's, while it listens

    def listening_on(self, socket: int | None) -> None:
        self._socket = socket

    def _notice_waiting(self) -> bool:
        """Whether something has come to the listener that it has not read yet: a notice may be on its way, so
        what was kept is not trusted for this call (one poll of a socket, no round trip)."""
        fd = self._socket
        return fd is not None and unread(fd)

    def trusted(self) -> bool:
        heard_at = self._heard_at
        return heard_at is not None and time.monotonic() - heard_at <= TRUST_S

    def get(self, key: str) -> Any | None:
        found = self._records.get(key)
        if found is None or not self.trusted() or time.monotonic() - found[0] > self._max_age_s():
            return None
        return None if self._notice_waiting() else found[1]

    def generation(self) -> int:
        return self._generation

    def keep(self, key: str, value: Any, generation: int) -> None:
        """Keep `value`, read by a caller that began at `generation`, unless anything changed since."""
        with self._lock:
            if generation != self._generation or not self.trusted():
                return
            if len(self._records) >= MAX_KEPT:
                self._records.clear()
            self._records[key] = (time.monotonic(), value)

    def forget(self, key: str) -> None:
        """Forget one key (EVERYTHING: all of them): it changed."""
        with self._lock:
            self._generation += 1
            if key == EVERYTHING:
                self._records.clear()
            else:
                self._records.pop(key, None)

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


class NoticeListener:
    """The thread of a process that LISTENs on `channel` and tells `kept` of each notice, its payload the key
    that changed. Started by the first caller of each process (a forked child starts its own), only where
    notices are sent and `enabled()` says anything is to be kept."""

    def __init__(self, kept: KeptWhileHeard, channel: str, *, what: str, enabled: Callable[[], bool]) -> None:
        self.kept = kept
        self.channel = channel
        self.what = what  # for its thread's name and its warnings
        self._enabled = enabled
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
            self.kept.deaf()  # what a parent process kept is not this one's to trust
            self._pid = os.getpid()
            if not self._enabled() or connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
                self._thread = None
                return
            self._stop = threading.Event()
            name = f"sagaflow-{self.what.replace(' ', '-')}-listener"
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name=name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and keep nothing; the next caller starts it again."""
        with self._lock:
            self._stop.set()
            thread, self._thread, self._pid = self._thread, None, None
        if thread is not None:
            thread.join(timeout=PROBE_S + 5)
        self.kept.deaf()

    def _run(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            conn = None
            try:
                conn = listening(connections[DEFAULT_DB_ALIAS], self.channel)
                self.backend_pid = conn.info.backend_pid
                self.kept.listening_on(conn.pgconn.socket)
                self.kept.hearing(since_new_connection=True)
                delay = 0.5
                while not stop.is_set():
                    for notice in conn.notifies(timeout=PROBE_S):
                        self.kept.forget(notice.payload)
                    conn.execute("SELECT 1")  # notices that arrive meanwhile wait for the next notifies()
                    self.kept.hearing()
            except Exception as error:  # noqa: BLE001 - any failure: keep nothing, and listen again
                self.kept.deaf()
                logger.warning(
                    "the %s listener lost its database connection (%s: %s); every %s is read from the database "
                    "until it is back, in %.1fs",
                    self.what,
                    type(error).__name__,
                    error,
                    self.what,
                    delay,
                )
            finally:
                self.backend_pid = None
                self.kept.listening_on(None)
                if conn is not None:
                    conn.close()
            stop.wait(delay)
            delay = min(delay * 2, 10.0)
