"""The relay: moves outbox rows to RabbitMQ, and marks each published only after the broker's confirm.

Rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED`, so several relays share the work and a row is never
published by two at once. The relay sleeps on PostgreSQL `LISTEN`, woken by the `NOTIFY` that the outbox's insert
trigger sends at commit naming the row, and sweeps every OUTBOX_SWEEP_INTERVAL_S as the safety net.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
import amqp
from kombu import Connection

from config import sql
from messaging import topology
from messaging.heartbeat import RELAY, Heartbeat
from messaging.models import OutboxMessage
from messaging.outbox import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)


CONFIRM_TIMEOUT_S = 10.0


def broker_connection() -> Connection:
    """A connection whose publishes each wait for the broker's confirm (a nack raises)."""
    return Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}, heartbeat=0)


class ConfirmingPublisher:
    """Publishes a batch on one channel in confirm mode, then waits once for the broker to confirm it all.

    A window of outstanding confirms instead of a round trip per message: the broker acks many at once.
    Confirms are taken by channel event listeners, not by `wait()`: py-amqp reads incoming frames before
    each publish, and an ack read there would otherwise be lost.
    """

    def __init__(self, broker: Connection):
        broker.ensure_connection(max_retries=3)
        self.connection = broker.connection
        self.channel = self.connection.channel()
        self.channel.confirm_select()
        self.next_tag = 1
        self.pending: set[int] = set()
        self.refused: set[int] = set()
        self.channel.events["basic_ack"].add(lambda tag, multiple: self._settle(tag, multiple, refused=False))
        self.channel.events["basic_nack"].add(lambda tag, multiple: self._settle(tag, multiple, refused=True))

    def _settle(self, delivery_tag: int, multiple: bool, *, refused: bool) -> None:
        settled = {tag for tag in self.pending if tag <= delivery_tag} if multiple else {delivery_tag}
        if refused:
            self.refused.update(settled & self.pending)
        self.pending.difference_update(settled)

    def publish(self, rows: list[OutboxMessage]) -> tuple[list[OutboxMessage], int]:
        """Publish rows; return (the rows the broker confirmed, how many it refused).

        Raises TimeoutError when the broker has not confirmed them all within CONFIRM_TIMEOUT_S.
        """
        sent: dict[int, OutboxMessage] = {}
        self.refused.clear()
        for row in rows:
            exchange, routing_key = ("", row.target_queue) if row.target_queue else (
                settings.MESSAGING_EXCHANGE, row.routing_key)
            self.pending.add(self.next_tag)
            sent[self.next_tag] = row
            self.next_tag += 1
            self.channel.basic_publish(_amqp_message(row), exchange=exchange, routing_key=routing_key)
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the broker did not confirm {len(self.pending)} messages")
            try:
                self.connection.drain_events(timeout=remaining)
            except socket.timeout:
                continue
        confirmed = [row for tag, row in sent.items() if tag not in self.refused]
        return confirmed, len(self.refused)


def _amqp_message(row: OutboxMessage) -> amqp.Message:
    return amqp.Message(
        row.body(),
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        timestamp=int(row.created_at.timestamp()),
        application_headers=row.wire_headers(),
        **row.wire_properties(),
    )


def relay_once(publisher: ConfirmingPublisher, batch_size: int | None = None, ids: list[int] | None = None) -> int:
    """Claim a batch of unpublished rows (only those of `ids`, when given), publish them, mark published those
    the broker confirmed.

    Returns how many were claimed. Rows not confirmed stay unpublished (and are unlocked) for the next pass;
    a broker failure is raised after the confirmed rows are marked.
    """
    failure: Exception | None = None
    with transaction.atomic():
        rows = claim(batch_size or settings.OUTBOX_BATCH_SIZE, ids)
        if not rows:
            return 0
        confirmed: list[OutboxMessage] = []
        try:
            confirmed, refused = publisher.publish(rows)
            if refused:
                logger.error("the broker refused %s of %s messages; they stay in the outbox", refused, len(rows))
        except Exception as error:  # noqa: BLE001 - raised after the commit below
            failure = error
        if confirmed:
            _mark_published([row.pk for row in confirmed])
    if failure is not None:
        raise failure
    return len(rows)


# The relay's statements are written out: it runs them for every batch, and building them through the ORM
# cost more CPU than the rest of a pass. Its rows are read through config/sql.py rather than a RawQuerySet,
# which cost 207 µs of CPU to claim five rows against 155.
_TABLE = OutboxMessage._meta.db_table
# Named, not `*`: a column added by a later migration must not change what a prepared statement returns.
_FIELDS = tuple(field.attname for field in OutboxMessage._meta.concrete_fields)


def claim(batch_size: int, ids: list[int] | None = None) -> list[OutboxMessage]:
    """Lock up to `batch_size` unpublished rows, oldest first, skipping rows another relay holds. Must run in a
    transaction. With `ids`, only those rows: found through the primary key, where a scan of the unpublished
    rows also walks the entries of rows published since the last vacuum."""
    if ids:
        params, limit = ids[:batch_size], None
        where = f"id IN ({sql.placeholders(params)}) AND published_at IS NULL ORDER BY id"
    else:
        params, limit, where = [], batch_size, "published_at IS NULL ORDER BY created_at, id"
    rows = sql.select(OutboxMessage, _FIELDS, where, params, limit=limit, lock=True, skip_locked=True)
    return [sql.loaded(OutboxMessage, **values) for values in rows]


def _mark_published(ids: list[int]) -> None:
    sql.execute(f"UPDATE {_TABLE} SET published_at = %s WHERE id IN ({sql.placeholders(ids)})",
                [sql.adapt(OutboxMessage, "published_at", timezone.now()), *ids])


class Relay:
    """The relay loop of one worker process, run in a thread until `stop` is set."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with Connection(settings.BROKER_URL, heartbeat=0) as broker:
                    broker.ensure_connection(max_retries=3)
                    topology.declare_all(broker.default_channel)
                    self._loop(ConfirmingPublisher(broker))
            except Exception:  # noqa: BLE001 - reconnect to whatever failed, database or broker
                logger.exception("relay pass failed; reconnecting")
                connection.close()
                self.stop.wait(1.0)

    def _loop(self, publisher: ConfirmingPublisher) -> None:
        listener = _Listener()
        heartbeat = Heartbeat(RELAY)
        next_connection_check = next_sweep = 0.0
        try:
            while not self.stop.is_set():
                heartbeat.beat()
                now = time.monotonic()
                if now >= next_connection_check:
                    # Drops a database connection past its age or broken. Once a second, not at every wake-up:
                    # each check costs a round trip in front of the messages that woke the relay.
                    close_old_connections()
                    next_connection_check = now + 1.0
                if now >= next_sweep:
                    # Rows no notification named to this relay: committed while it was reconnecting, or left by a
                    # relay that died. A full batch may have left rows behind; a partial one took all there were.
                    while relay_once(publisher) >= settings.OUTBOX_BATCH_SIZE and not self.stop.is_set():
                        pass
                    next_sweep = time.monotonic() + settings.OUTBOX_SWEEP_INTERVAL_S
                notified = listener.wait(min(next_sweep - time.monotonic(), settings.WORKER_HEARTBEAT_INTERVAL_S))
                if notified is None:
                    next_sweep = 0.0
                    continue
                for start in range(0, len(notified), settings.OUTBOX_BATCH_SIZE):
                    relay_once(publisher, ids=notified[start:start + settings.OUTBOX_BATCH_SIZE])
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

    def wait(self, timeout: float) -> list[int] | None:
        """The ids of the outbox rows committed since the last call, waiting up to `timeout` for the first.

        None when a notification named no row (the trigger of a database not yet migrated): sweep instead.
        """
        if self.conn is None:
            threading.Event().wait(max(0.0, timeout))
            return []
        # The first packet whole (stopping inside it would drop the rest of it), then whatever else has arrived.
        notices = [*self.conn.notifies(timeout=max(0.0, timeout), stop_after=1), *self.conn.notifies(timeout=0)]
        if not all(notice.payload.isdigit() for notice in notices):
            return None
        return [int(notice.payload) for notice in notices]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
