"""Heartbeats: each delivery loop says, every WORKER_HEARTBEAT_INTERVAL_S, that it is still going round.

A consumer thread of a Celery worker beats from its drain loop, so a thread that died or hangs stops beating
even while its process lives on; so does each worker's relay, between its passes. In the embedded mode the
in-process dispatcher beats as "inprocess". The health check reads the rows back (`live_loops`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from messaging.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

INPROCESS = "inprocess"
DEAD_LETTERS = "dead_letters"
RELAY = "relay"
FORGET_AFTER = timedelta(days=1)


def worker_name() -> str:
    """host:pid of this process. Read on each call, so a forked child does not beat under its parent's name."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """The heartbeat of one loop. `beat()` is cheap to call on every turn: it writes at most once an interval.

    Never raises: a loop must not stop because its heartbeat could not be written (the database being down
    shows in the health check anyway).
    """

    def __init__(self, loop: str):
        self.loop = loop
        self.started_at = timezone.now()
        self._next_at = 0.0
        self._first = True

    def beat(self) -> None:
        now = time.monotonic()
        if now < self._next_at:
            return
        self._next_at = now + settings.WORKER_HEARTBEAT_INTERVAL_S
        try:
            self._write()
        except DatabaseError as error:
            logger.warning("could not write the heartbeat of %s: %s", self.loop, error)
            if not connection.in_atomic_block:
                connection.close()

    def _write(self) -> None:
        beat_at = timezone.now()
        worker = worker_name()
        updated = WorkerHeartbeat.objects.filter(worker=worker, loop=self.loop).update(beat_at=beat_at)
        if not updated:
            WorkerHeartbeat.objects.create(worker=worker, loop=self.loop, started_at=self.started_at,
                                           beat_at=beat_at)
        if self._first:
            # Rows of processes long gone; pruned here so that no schedule is needed for it.
            WorkerHeartbeat.objects.filter(beat_at__lt=beat_at - FORGET_AFTER).delete()
            self._first = False


def live_loops(*, within_s: float) -> set[str]:
    """The loops that some process has beaten for in the last `within_s` seconds."""
    since = timezone.now() - timedelta(seconds=within_s)
    return set(WorkerHeartbeat.objects.filter(beat_at__gte=since).values_list("loop", flat=True))


def required_loops() -> set[str]:
    """What must be alive for messages to flow: every consumer, the dead-letter store and a relay, or in the
    embedded mode the one in-process dispatcher that does all of it."""
    if settings.MESSAGING_TRANSPORT == "inprocess":
        return {INPROCESS}
    from messaging import bus

    return {*bus.consumers(), DEAD_LETTERS, RELAY}
