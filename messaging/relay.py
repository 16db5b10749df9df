"""The relay: moves outbox rows to RabbitMQ, and marks each published only after the broker's confirm.

Rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED`, so several relays share the work and a row is never
published by two at once. The relay sleeps on PostgreSQL `LISTEN` (woken by the `NOTIFY` that `publish()`
sends at commit) and sweeps every OUTBOX_SWEEP_INTERVAL_S as the safety net.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from kombu import Connection, Producer

from messaging import topology
from messaging.envelope import ATTEMPT_HEADER
from messaging.models import OutboxMessage
from messaging.outbox import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)


def broker_connection() -> Connection:
    """A connection whose publishes each wait for the broker's confirm (a nack raises)."""
    return Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}, heartbeat=0)


def publish_row(producer: Producer, row: OutboxMessage) -> None:
    """Publish one outbox row; returns after the broker has confirmed it."""
    properties: dict[str, Any] = {
        "message_id": str(row.message_id),
        "correlation_id": row.correlation_id,
        "type": row.routing_key,
        "timestamp": int(row.created_at.timestamp()),
    }
    headers = {**row.headers, "causation_id": row.causation_id, "order_id": row.order_id, ATTEMPT_HEADER: 1}
    if row.target_queue:
        exchange, routing_key = "", row.target_queue
    else:
        exchange, routing_key = settings.MESSAGING_EXCHANGE, row.routing_key
    producer.publish(
        row.body(),
        exchange=exchange,
        routing_key=routing_key,
        headers=headers,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        retry=False,
        **properties,
    )


def relay_once(producer: Producer, batch_size: int | None = None) -> int:
    """Claim a batch of unpublished rows, publish them with confirms, mark them published. Returns the count.

    A failure leaves the batch unpublished (and unlocked) for the next pass.
    """
    batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
    failure: Exception | None = None
    with transaction.atomic():
        rows = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True)
            .order_by("created_at", "id")[:batch_size]
        )
        published = []
        for row in rows:
            try:
                publish_row(producer, row)
            except Exception as error:  # noqa: BLE001 - keep what was confirmed, raise after the commit
                failure = error
                break
            published.append(row.pk)
        if published:
            OutboxMessage.objects.filter(pk__in=published).update(published_at=timezone.now())
    if failure is not None:
        raise failure
    return len(published)


class Relay:
    """The relay loop of one worker process, run in a thread until `stop` is set."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with broker_connection() as broker:
                    broker.ensure_connection(max_retries=3)
                    topology.declare_all(broker.default_channel)
                    producer = Producer(broker.channel())
                    self._loop(producer)
            except Exception:  # noqa: BLE001 - reconnect to whatever failed, database or broker
                logger.exception("relay pass failed; reconnecting")
                connection.close()
                self.stop.wait(1.0)

    def _loop(self, producer: Producer) -> None:
        listener = _Listener()
        try:
            while not self.stop.is_set():
                close_old_connections()
                while relay_once(producer) and not self.stop.is_set():
                    pass
                listener.wait(settings.OUTBOX_SWEEP_INTERVAL_S)
        finally:
            listener.close()


class _Listener:
    """Waits for the outbox NOTIFY on its own autocommit connection; falls back to plain sleeping."""

    def __init__(self) -> None:
        self.conn = None
        if connection.vendor == "postgresql":
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self.conn = psycopg.connect(**params, autocommit=True)
            self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout: float) -> None:
        if self.conn is None:
            threading.Event().wait(timeout)
            return
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            break

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
