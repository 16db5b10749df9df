"""The in-process transport of the embedded default: the outbox is the queue, one thread delivers it.

A row is marked published only after every consumer bound to its routing key has handled it (or
dead-lettered it), so a crash loses nothing: the row is delivered again and the inbox skips what was done.
The same thread runs the periodic tasks that Celery beat runs in the production topology, as the apps declare
them (messaging/periodic.py).

An outward consumer (`bus.outward`: it waits on servers that are not ours) has a thread of its own for the
rows only it handles, so that a slow or failing server never holds up the saga. There a row that fails is
tried again after its own backoff while the others go on; the main thread instead waits for the row in front.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from messaging import bus, periodic
from messaging.consumers import handle_delivery, retry_delay_s, store_dead_letter
from messaging.heartbeat import INPROCESS, Heartbeat
from messaging.models import OutboxMessage

logger = logging.getLogger(__name__)

# The lane of every consumer that is not outward: the one dispatcher thread.
MAIN = ""

_wakeup = threading.Event()
_start_lock = threading.Lock()
_thread: threading.Thread | None = None
_lanes: dict[str, tuple[Lane, threading.Thread]] = {}


def wake() -> None:
    """Called on commit of a transaction that wrote outbox rows."""
    _wakeup.set()
    for lane, _ in list(_lanes.values()):
        lane.wakeup.set()
    if settings.MESSAGING_INPROCESS_AUTOSTART:
        start()


def start() -> None:
    """Start the dispatcher thread, and one for each outward consumer, once per process."""
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run_forever, name="sagaflow-inprocess", daemon=True)
            _thread.start()
        for consumer in apart():
            known = _lanes.get(consumer)
            if known is None or not known[1].is_alive():
                lane = Lane(consumer)
                thread = threading.Thread(target=lane.run_forever, name=f"sagaflow-inprocess-{consumer}", daemon=True)
                _lanes[consumer] = (lane, thread)
                thread.start()


def apart() -> dict[str, set[str]]:
    """Each outward consumer, and the routing keys that it alone handles: its own thread delivers them. A key
    that another consumer handles too stays with the main thread."""
    return {
        consumer: {key for key in bus.registry()[consumer] if bus.consumers_for(key) == [consumer]}
        for consumer in bus.outward_consumers()
    }


def pending(lane: str | None = None) -> QuerySet[OutboxMessage]:
    """The rows not yet delivered: all of them (None), the main thread's (MAIN), or an outward consumer's."""
    rows = OutboxMessage.objects.filter(published_at__isnull=True)
    if lane is None:
        return rows
    lanes = apart()
    if lane == MAIN:
        for consumer, keys in lanes.items():
            rows = rows.exclude(target_queue=consumer).exclude(target_queue="", routing_key__in=keys)
        return rows
    return rows.filter(Q(target_queue=lane) | Q(target_queue="", routing_key__in=lanes[lane]))


class DeliveryBlocked(Exception):
    """A consumer failed transiently: the row stays in the outbox and delivery waits a backoff."""


def drain(max_rounds: int = 10_000, *, lane: str | None = None) -> int:
    """Deliver unpublished rows (of `lane`, see `pending`) until none are left. Returns rows done; raises
    DeliveryBlocked to back off."""
    delivered = 0
    for _ in range(max_rounds):
        rows = list(pending(lane).order_by("created_at", "id")[: settings.OUTBOX_BATCH_SIZE])
        if not rows:
            break
        for row in rows:
            if not _deliver(row):
                raise DeliveryBlocked(row.routing_key)
            delivered += 1
    return delivered


def _deliver(row: OutboxMessage) -> bool:
    """Hand one row to each of its consumers, then mark it published. False when a consumer failed
    transiently: the row stays, with one more attempt counted."""
    targets = [row.target_queue] if row.target_queue else bus.consumers_for(row.routing_key)
    properties, headers = row.wire_properties(), row.wire_headers(attempt=row.publish_attempts + 1)
    for consumer in targets:
        verdict = handle_delivery(consumer, row.body(), properties, headers, row.routing_key)
        if verdict.action == "retry":
            row.publish_attempts += 1
            OutboxMessage.objects.filter(pk=row.pk).update(publish_attempts=row.publish_attempts)
            return False
        if verdict.action == "dead_letter":
            store_dead_letter(verdict)
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=row.pk).update(published_at=timezone.now())
    return True


class Lane:
    """The thread of one outward consumer: delivers its rows, each failed one again after its own backoff
    (MESSAGING_RETRY_BASE_S doubled at each attempt, as the retry queues of the production topology wait)."""

    def __init__(self, consumer: str):
        self.consumer = consumer
        self.wakeup = threading.Event()
        # row pk -> time.monotonic() of its next attempt. Kept in memory: after a restart each is tried at once.
        self.not_before: dict[int, float] = {}
        self.heartbeat = Heartbeat(f"{INPROCESS}.{consumer}")

    def drain(self) -> float | None:
        """Deliver the rows that are due. Returns the seconds until the next one waiting out its backoff."""
        while True:
            now = time.monotonic()
            waiting = [pk for pk, due in self.not_before.items() if due > now]
            rows = list(
                pending(self.consumer)
                .exclude(pk__in=waiting)
                .order_by("created_at", "id")[: settings.OUTBOX_BATCH_SIZE]
            )
            if not rows:
                break
            for row in rows:
                self.heartbeat.beat()  # each delivery may wait a whole timeout on a server that is not ours
                if _deliver(row):
                    self.not_before.pop(row.pk, None)
                else:
                    self.not_before[row.pk] = time.monotonic() + retry_delay_s(row.publish_attempts)
        if not self.not_before:
            return None
        return max(0.0, min(self.not_before.values()) - time.monotonic())

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Deliver until `stop` is set (never, for the thread `start` starts)."""
        stop = stop or threading.Event()
        wait: float | None = None
        while not stop.is_set():
            self.wakeup.wait(timeout=settings.OUTBOX_SWEEP_INTERVAL_S if wait is None else max(wait, 0.01))
            self.wakeup.clear()
            try:
                close_old_connections()
                self.heartbeat.beat()
                wait = self.drain()
            except Exception:  # noqa: BLE001 - the lane must outlive any one failure
                logger.exception("in-process delivery to %s failed", self.consumer)
                wait = 1.0
        connection.close()


def _run_forever() -> None:
    tasks = [task for task in periodic.declared() if task.inprocess]
    next_run = dict.fromkeys((task.name for task in tasks), 0.0)
    backoff = 0.0
    heartbeat = Heartbeat(INPROCESS)
    while True:
        _wakeup.wait(timeout=max(backoff, 0.01) if backoff else settings.OUTBOX_SWEEP_INTERVAL_S)
        _wakeup.clear()
        try:
            close_old_connections()
            heartbeat.beat()
            try:
                drain(lane=MAIN)
                backoff = 0.0
            except DeliveryBlocked:
                backoff = min(max(backoff * 2, settings.MESSAGING_RETRY_BASE_S), 30.0)
            _run_due(tasks, next_run)
        except Exception:  # noqa: BLE001 - the dispatcher must outlive any one failure
            logger.exception("in-process dispatcher pass failed")
            backoff = min(max(backoff * 2, 1.0), 30.0)


def _run_due(tasks: list[periodic.PeriodicTask], next_run: dict[str, float]) -> None:
    """Run each periodic task whose time has come. One that did something (the sweep drove sagas on) may have
    written messages: the next pass comes at once."""
    for task in tasks:
        if time.monotonic() >= next_run[task.name]:
            if task.run():
                _wakeup.set()
            next_run[task.name] = time.monotonic() + task.interval_s()
