"""The in-process transport of the embedded default: the outbox is the queue, one thread delivers it.

A row is marked published only after every consumer bound to its routing key has handled it (or
dead-lettered it), so a crash loses nothing: the row is delivered again and the inbox skips what was done.
The same thread runs the periodic tasks that Celery beat runs in the production topology, as the apps declare
them (messaging/periodic.py).
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from messaging import bus, periodic
from messaging.consumers import handle_delivery, store_dead_letter
from messaging.heartbeat import INPROCESS, Heartbeat
from messaging.models import OutboxMessage

logger = logging.getLogger(__name__)

_wakeup = threading.Event()
_start_lock = threading.Lock()
_thread: threading.Thread | None = None


def wake() -> None:
    """Called on commit of a transaction that wrote outbox rows."""
    _wakeup.set()
    if settings.MESSAGING_INPROCESS_AUTOSTART:
        start()


def start() -> None:
    """Start the dispatcher thread once per process."""
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run_forever, name="sagaflow-inprocess", daemon=True)
            _thread.start()


class DeliveryBlocked(Exception):
    """A consumer failed transiently: the row stays in the outbox and delivery waits a backoff."""


def drain(max_rounds: int = 10_000) -> int:
    """Deliver unpublished rows until none are left. Returns rows done; raises DeliveryBlocked to back off."""
    delivered = 0
    for _ in range(max_rounds):
        rows = list(
            OutboxMessage.objects.filter(published_at__isnull=True).order_by("created_at", "id")[
                : settings.OUTBOX_BATCH_SIZE
            ]
        )
        if not rows:
            break
        for row in rows:
            _deliver(row)
            delivered += 1
    return delivered


def _deliver(row: OutboxMessage) -> None:
    """Hand one row to each of its consumers, then mark it published."""
    targets = [row.target_queue] if row.target_queue else bus.consumers_for(row.routing_key)
    properties, headers = row.wire_properties(), row.wire_headers(attempt=row.publish_attempts + 1)
    for consumer in targets:
        verdict = handle_delivery(consumer, row.body(), properties, headers, row.routing_key)
        if verdict.action == "retry":
            OutboxMessage.objects.filter(pk=row.pk).update(publish_attempts=row.publish_attempts + 1)
            raise DeliveryBlocked(row.routing_key)
        if verdict.action == "dead_letter":
            store_dead_letter(verdict)
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=row.pk).update(published_at=timezone.now())


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
                drain()
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
