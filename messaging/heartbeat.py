"""Heartbeats: each delivery loop says, every WORKER_HEARTBEAT_INTERVAL_S, that it is still going round.

A beat means progress on connections that live: a consumer thread of a Celery worker beats from its drain loop
once its broker connection has passed its heartbeat check, and each worker's relay beats between its passes
once its broker connection has. A thread that died, hangs, or goes round on a dead connection stops beating
even while its process lives on. In the embedded mode the in-process dispatcher beats as "inprocess". The health
check reads the rows back (`live_loops`, `stuck_loops`).
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
            WorkerHeartbeat.objects.create(worker=worker, loop=self.loop, started_at=self.started_at, beat_at=beat_at)
        if self._first:
            # Rows of processes long gone; pruned here so that no schedule is needed for it.
            WorkerHeartbeat.objects.filter(beat_at__lt=beat_at - FORGET_AFTER).delete()
            self._first = False


def live_loops(*, within_s: float) -> set[str]:
    """The loops that some process has beaten for in the last `within_s` seconds."""
    since = timezone.now() - timedelta(seconds=within_s)
    return set(WorkerHeartbeat.objects.filter(beat_at__gte=since).values_list("loop", flat=True))


def stuck_loops(*, within_s: float) -> dict[str, list[str]]:
    """worker: its loops silent for `within_s` seconds while another loop of the same process has beaten within
    them. The process lives, so these threads are wedged: blocked, or going round on a dead connection."""
    since = timezone.now() - timedelta(seconds=within_s)
    beats: dict[str, list[tuple[str, bool]]] = {}
    for worker, loop, beat_at in WorkerHeartbeat.objects.values_list("worker", "loop", "beat_at"):
        beats.setdefault(worker, []).append((loop, beat_at >= since))
    return {
        worker: sorted(loop for loop, live in loops if not live)
        for worker, loops in beats.items()
        if any(live for _, live in loops) and not all(live for _, live in loops)
    }


def required_loops() -> set[str]:
    """What must be alive for messages to flow: every consumer, the dead-letter store and a relay, or in the
    embedded mode the one in-process dispatcher that does all of it."""
    if settings.MESSAGING_TRANSPORT == "inprocess":
        return {INPROCESS}
    from messaging import bus

    return {*bus.consumers(), DEAD_LETTERS, RELAY}
