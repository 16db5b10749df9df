"""The relay: moves outbox rows to RabbitMQ, and marks each published only after the broker's confirm.

Rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED`, so several relays share the work and a row is never
published by two at once. With the local hand-off on, a claimed row that this worker's own consumers take is
handed to them instead of published (messaging/handoff.py). The relay sleeps on PostgreSQL `LISTEN`, woken by
the `NOTIFY` that the outbox's insert trigger sends at commit naming the row, and sweeps every
OUTBOX_SWEEP_INTERVAL_S as the safety net.

What the hand-off took past the broker is copied to the tap exchange (`Tap`), so that the broker still sees
every message.

A row the broker refuses (a nack) is held back, longer at each refusal (RefusedRows): the relay never sweeps
again at once for it, and the rows that notifications name go on being published while it waits.
"""

from __future__ import annotations

import logging
import threading
import time

import amqp
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from kombu import Connection
from opentelemetry.trace import Link, Span, SpanKind, StatusCode

from messaging import handoff, queries, topology, tracing
from messaging.broker import HEARTBEAT_RATE, Reconnect, connected, doubling, log_lost, tick_s
from messaging.heartbeat import RELAY, Heartbeat
from messaging.models import OutboxMessage
from messaging.outbox import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)


CONFIRM_TIMEOUT_S = 10.0
# On a tap's copy of a message that the hand-off took past the broker.
HANDED_OFF_HEADER = "x-sagaflow-handed-off"


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
        self.tap = Tap(self.connection)

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
        spans: dict[int, Span] = {}
        self.refused.clear()
        try:
            for row in rows:
                exchange, routing_key = (
                    ("", row.target_queue) if row.target_queue else (settings.MESSAGING_EXCHANGE, row.routing_key)
                )
                span = _send_span(row, exchange, routing_key) if tracing.enabled else None
                self.pending.add(self.next_tag)
                sent[self.next_tag] = row
                if span is not None:
                    spans[self.next_tag] = span
                self.next_tag += 1
                self.channel.basic_publish(_amqp_message(row, span), exchange=exchange, routing_key=routing_key)
            self._wait_for_confirms()
        except BaseException as error:
            _end_sends(spans, self.pending, failure=error)
            raise
        _end_sends(spans, self.refused)
        confirmed = [row for tag, row in sent.items() if tag not in self.refused]
        return confirmed, len(self.refused)

    def _wait_for_confirms(self) -> None:
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the broker did not confirm {len(self.pending)} messages")
            try:
                self.connection.drain_events(timeout=min(remaining, tick_s()))
            except TimeoutError:
                pass
            # A broker gone silent is noticed by its missing heartbeats before the deadline.
            self.connection.heartbeat_tick(rate=HEARTBEAT_RATE)

    def keep_alive(self) -> None:
        """Read what has arrived (the broker's heartbeats) without waiting, and send ours when it is due.

        Raises once nothing has come from the broker for two heartbeats: the connection is dead.
        """
        try:
            for _ in range(100):
                self.connection.drain_events(timeout=0)
        except (TimeoutError, BlockingIOError):
            pass
        self.connection.heartbeat_tick(rate=HEARTBEAT_RATE)


class Tap:
    """Copies the rows a hand-off took past the broker to the tap exchange (messaging/topology.py), on a channel
    of its own, unconfirmed: a copy is for the eyes of whoever binds a queue there, and the hand-off never
    waits for it. A copy is lost when the worker dies before it is sent; what it copies is not."""

    def __init__(self, broker: amqp.Connection):
        self.channel = broker.channel()
        self.exchange = topology.tap_exchange().name

    def __call__(self, rows: list[OutboxMessage]) -> None:
        try:
            for row in rows:
                message = _amqp_message(row)
                message.properties["application_headers"][HANDED_OFF_HEADER] = True
                # The class's own publish: on a connection with confirms on, the instance's waits for each.
                amqp.Channel.basic_publish(self.channel, message, exchange=self.exchange, routing_key=row.routing_key)
        except Exception as error:  # noqa: BLE001 - a lost copy must not undo a hand-off; the thread's loop reconnects
            logger.warning("could not copy %s handed-off messages to the tap: %s", len(rows), error)


def _amqp_message(row: OutboxMessage, span: Span | None = None) -> amqp.Message:
    return amqp.Message(
        row.body(),
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        timestamp=int(row.created_at.timestamp()),
        application_headers=row.wire_headers(traceparent=tracing.traceparent_of(span)),
        **row.wire_properties(),
    )


def _send_span(row: OutboxMessage, exchange: str, routing_key: str) -> Span | None:
    """The span of one row's publish: in the trace of the span that wrote the row, and linked to it, with the
    relay lag (from the row's insert to its publish). None for a row written with tracing off or sampled out."""
    parent = tracing.extracted({tracing.TRACEPARENT: row.traceparent, tracing.TRACESTATE: row.tracestate})
    if parent is None:
        return None
    attributes = tracing.messaging_attributes(
        operation="send",
        destination=exchange or routing_key,
        routing_key=routing_key,
        message_id=str(row.message_id),
        correlation_id=row.correlation_id,
    )
    attributes["sagaflow.relay.lag_ms"] = round((timezone.now() - row.created_at).total_seconds() * 1000, 3)
    attributes["sagaflow.outbox.id"] = row.pk
    return tracing.tracer().start_span(
        f"send {row.routing_key}",
        context=parent,
        kind=SpanKind.PRODUCER,
        links=[Link(tracing.span_context_in(parent))],
        attributes=attributes,
    )


def _end_sends(spans: dict[int, Span], failed: set[int], failure: BaseException | None = None) -> None:
    """End the publish spans once the broker has answered: those of `failed` (refused, or unconfirmed when the
    publish failed) marked as errors."""
    for tag, span in spans.items():
        if tag in failed:
            if failure is not None:
                span.record_exception(failure)
            span.set_status(StatusCode.ERROR, "not confirmed" if failure is not None else "refused by the broker")
        span.end()


def relay_once(
    publisher: ConfirmingPublisher,
    batch_size: int | None = None,
    ids: list[int] | None = None,
    refusals: RefusedRows | None = None,
) -> int:
    """Claim a batch of unpublished rows (only those of `ids`, when given), publish them, mark published those
    the broker confirmed.

    Returns how many were claimed. Rows not confirmed stay unpublished (and are unlocked) for the next pass;
    a broker failure is raised after the confirmed rows are marked. With `refusals`, a sweep (no `ids`) skips
    the rows it holds back, and it learns which rows the broker refused.
    """
    with handoff.collecting() as leased, transaction.atomic():
        held = refusals.held() if refusals is not None and not ids else []
        rows = queries.outbox_claim(batch_size or settings.OUTBOX_BATCH_SIZE, ids, skip=held)
        handed, published = handoff.for_relay(rows)
        applied = handoff.apply_claimed(handed)
        confirmed, failure = _published(publisher, published) if published else ([], None)
        if confirmed:
            queries.outbox_mark_published([row.pk for row in confirmed])
    handoff.handed_off(applied, publisher.tap)
    handoff.hand_off(leased, publisher.tap)
    if failure is not None:
        raise failure
    if refusals is not None:
        refusals.record(claimed=[row.pk for row in published], confirmed=[row.pk for row in confirmed])
    return len(rows)


def _published(
    publisher: ConfirmingPublisher, rows: list[OutboxMessage]
) -> tuple[list[OutboxMessage], Exception | None]:
    """The rows the broker confirmed, and the failure that kept it from confirming the others, if any."""
    try:
        confirmed, refused = publisher.publish(rows)
    except Exception as error:  # noqa: BLE001 - the caller raises it once the confirmed rows are marked
        return [], error
    if refused:
        logger.error("the broker refused %s of %s messages; they stay in the outbox", refused, len(rows))
    return confirmed, None


class RefusedRows:
    """The outbox rows the broker refused, each held back for OUTBOX_REFUSED_BACKOFF_S, then twice as long at
    each refusal after that, up to OUTBOX_REFUSED_BACKOFF_MAX_S. A relay's own: not shared between threads."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[int, float]] = {}  # id: (refusals, held until)
        self.last_refused = 0  # of the last pass

    def record(self, *, claimed: list[int], confirmed: list[int]) -> None:
        """What became of the rows of one pass: those not confirmed were refused."""
        now = time.monotonic()
        refused = set(claimed) - set(confirmed)
        for pk in confirmed:
            self._rows.pop(pk, None)
        for pk in refused:
            count = self._rows.get(pk, (0, 0.0))[0] + 1
            self._rows[pk] = (
                count,
                now + doubling(settings.OUTBOX_REFUSED_BACKOFF_S, settings.OUTBOX_REFUSED_BACKOFF_MAX_S, count),
            )
        self.last_refused = len(refused)

    def held(self) -> list[int]:
        """The rows held back now."""
        now = time.monotonic()
        # A row not retried for a whole maximum backoff after its hold ended was published by another relay.
        forgotten = now - settings.OUTBOX_REFUSED_BACKOFF_MAX_S
        self._rows = {pk: entry for pk, entry in self._rows.items() if entry[1] > forgotten}
        return [pk for pk, (_, until) in self._rows.items() if until > now]


class Relay:
    """The relay loop of one worker process, run in a thread until `stop` is set."""

    def __init__(self, stop: threading.Event, publisher: type[ConfirmingPublisher] = ConfirmingPublisher):
        self.stop = stop
        self.publisher = publisher
        self.heartbeat = Heartbeat(RELAY)
        self.refusals = RefusedRows()

    def run(self) -> None:
        reconnect = Reconnect()
        while not self.stop.is_set():
            try:
                with connected() as broker:
                    topology.declare_all(broker.default_channel)
                    publisher = self.publisher(broker)
                    reconnect.connected()
                    self.serve(publisher)
            except Exception as error:  # noqa: BLE001 - reconnect to whatever failed, database or broker
                delay = reconnect.delay()
                log_lost("the relay", error, delay)
                connection.close()
                self.stop.wait(delay)

    def serve(self, publisher: ConfirmingPublisher) -> None:
        """Relay through `publisher` until stopped; raises when the database or the broker fails."""
        listener = _Listener()
        next_connection_check = next_sweep = 0.0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= next_connection_check:
                    # Drops a database connection past its age or broken. Once a second, not at every wake-up:
                    # each check costs a round trip in front of the messages that woke the relay.
                    close_old_connections()
                    next_connection_check = now + 1.0
                if now >= next_sweep:
                    listener.probe()
                    next_sweep = self._sweep(publisher)
                # Not longer than a tick: the broker's heartbeats must be read and answered meanwhile.
                notified = listener.wait(min(next_sweep - time.monotonic(), tick_s()))
                if notified is None:
                    next_sweep = 0.0
                ids = notified or []
                for start in range(0, len(ids), settings.OUTBOX_BATCH_SIZE):
                    relay_once(publisher, ids=ids[start : start + settings.OUTBOX_BATCH_SIZE], refusals=self.refusals)
                # The relay beats between its passes, once both of its connections have answered.
                publisher.keep_alive()
                self.heartbeat.beat()
        finally:
            listener.close()

    def _sweep(self, publisher: ConfirmingPublisher) -> float:
        """Publish the rows no notification named to this relay: committed while it was reconnecting, or left by
        a relay that died. Returns when to sweep next (time.monotonic())."""
        refusals = self.refusals
        # A full batch may have left rows behind, a partial one took all there were. After a refusal the rows
        # behind wait for the next sweep rather than be offered at once to a broker that refuses; that sweep skips
        # the rows held back, so that rows for another queue are not stuck behind them.
        while (
            relay_once(publisher, refusals=refusals) >= settings.OUTBOX_BATCH_SIZE
            and not refusals.last_refused
            and not self.stop.is_set()
        ):
            pass
        return time.monotonic() + settings.OUTBOX_SWEEP_INTERVAL_S


class _Listener:
    """Waits for the outbox NOTIFY on its own autocommit connection; falls back to plain sleeping."""

    def __init__(self) -> None:
        self.conn = None
        if connection.vendor == "postgresql":
            from config.kernel.postgresql.base import listening

            self.conn = listening(connection, NOTIFY_CHANNEL)

    def probe(self) -> None:
        """Raises when the listening connection no longer answers: a silent one would never be woken."""
        if self.conn is not None:
            self.conn.execute("SELECT 1")

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
