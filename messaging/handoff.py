"""The local hand-off (MESSAGING_LOCAL_HANDOFF): a worker hands the messages its handlers write to the consumers
it hosts itself, without the broker.

While a consumer thread handles deliveries, `publish()` leases each row whose consumers all run in this worker
and none is outward (`handoff_until`: the relay leaves the row alone until then, and the outbox trigger does not
announce it). Once the handler's transaction has committed and its deliveries are acked, the thread hands the
leased rows over: in one transaction it locks those still unpublished (skipping any a relay holds), applies each
through the same delivery path and inbox as a delivery from the broker, and marks them published; once that
has committed, a copy of each goes to the broker's tap exchange (messaging.relay.Tap). What those
handlers write is leased and handed over in turn, so that a saga may run to its end on one thread. The relay
does the same with the rows it claims that no worker leased (the API's `payment.process`, a cancel, what beat
writes): it applies them in its claim's transaction instead of publishing them (`for_relay`, `apply_claimed`),
and hands over what they write once it has committed.

Nothing is lost: a worker that dies before or during a hand-off leaves the rows unpublished, and the relay's
sweep publishes them once their lease has ended. Nothing is doubled: a row goes one way, the hand-off's or the
relay's, under the row's lock, and the consumers' inbox refuses a second effect whatever happens. A handler that
fails rolls the hand-off back and gives its rows back to the relay at once: they go through the broker, with its
retries and dead letters, as they would have without the hand-off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, transaction
from django.utils import timezone

from messaging import bus, metrics, queries
from messaging.consumers import drop_broken_connection, handle_delivery
from messaging.models import OutboxMessage
from messaging.outbox import handoff_collector

logger = logging.getLogger(__name__)

# Where the rows handed off are copied, so that the broker still sees them (messaging.relay.Tap).
CopyToTap = Callable[[list[OutboxMessage]], None]

# Rounds of one hand-off: a saga's steps are a handful. What a longer chain writes past them goes to the relay.
MAX_ROUNDS = 16


@cache
def local(routing_key: str) -> bool:
    """Whether this worker may hand a message of `routing_key` to its own consumers: all of them run here and
    none is outward (an outward handler is never batched, and runs on its own thread)."""
    consumers = bus.consumers_for(routing_key)
    hosted, outward = set(settings.MESSAGING_CONSUMERS), set(bus.outward_consumers())
    return bool(consumers) and all(name in hosted and name not in outward for name in consumers)


setting_changed.connect(lambda **kwargs: local.cache_clear(), weak=False, dispatch_uid="messaging.handoff.local")


class Collector:
    """The rows leased while it is the current one (`collecting()`)."""

    def __init__(self) -> None:
        self.rows: list[OutboxMessage] = []
        self.until = timezone.now() + timedelta(seconds=settings.MESSAGING_HANDOFF_LEASE_S)

    def lease(self, message: OutboxMessage) -> None:
        """Called by `publish()` before the row is inserted."""
        if local(message.routing_key):
            message.handoff_until = self.until
            self.rows.append(message)


@contextmanager
def collecting() -> Iterator[Collector | None]:
    """Lease what `publish()` writes meanwhile, when the hand-off is on; None when it is off."""
    if not settings.MESSAGING_LOCAL_HANDOFF:
        yield None
        return
    collector = Collector()
    token = handoff_collector.set(collector)
    try:
        yield collector
    finally:
        handoff_collector.reset(token)


def hand_off(collector: Collector | None, tap: CopyToTap | None) -> None:
    """Hand over the rows `collector` leased, once what wrote them has committed, and give `tap` a copy of each
    row handed over. Never raises: what it could not hand over goes to the relay."""
    rows = collector.rows if collector is not None else []
    for _ in range(MAX_ROUNDS):
        if not rows:
            return
        rows = _handed_over(rows, tap)
    _release(rows)


def for_relay(rows: list[OutboxMessage]) -> tuple[list[OutboxMessage], list[OutboxMessage]]:
    """Of the rows a relay claimed, those it hands to this worker's consumers itself, and those it publishes.
    It hands over, with the hand-off on, a row never leased (what the API, beat or a command wrote) whose
    consumers all run here. A row once leased goes through the broker: a hand-off of it failed, or the worker
    that leased it died."""
    if not settings.MESSAGING_LOCAL_HANDOFF:
        return [], rows
    handed: list[OutboxMessage] = []
    published: list[OutboxMessage] = []
    for row in rows:
        mine = row.handoff_until is None and not row.target_queue and local(row.routing_key)
        (handed if mine else published).append(row)
    return handed, published


def apply_claimed(rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """Apply `rows`, which the caller's transaction holds locked (a relay's claim), through this worker's
    consumers in a savepoint of that transaction, and mark them handed off; the lock is never let go between
    the claim and the hand-off, so no other relay publishes them meanwhile. What their handlers write is leased
    to the current collector, for `hand_off` once the caller has committed. A handler that fails rolls the
    savepoint back and ends the rows' lease: they go through the broker. Returns the rows handed off, for
    `handed_off` once the caller has committed. Raises only when the database fails."""
    if not rows:
        return []
    try:
        with transaction.atomic():
            _apply(rows)
            queries.outbox_mark_handed_off([row.pk for row in rows])
    except _ToBroker:
        _rolled_back(rows, "a handler failed")
        _count_released(queries.outbox_release_to_relay([row.pk for row in rows]))
        return []
    return rows


def handed_off(rows: list[OutboxMessage], tap: CopyToTap | None) -> None:
    """Count `rows` handed off and copy them to `tap`, once the transaction that marked them has committed."""
    for row in rows:
        metrics.HANDED_OFF.labels(row.routing_key).inc()
    if rows and tap is not None:
        tap(rows)


class _ToBroker(Exception):
    """A handler of the hand-off failed: roll it back and give its rows to the relay."""


def _apply(rows: list[OutboxMessage]) -> None:
    """Each of `rows` through each of its consumers, as the broker's delivery of it would be; raises _ToBroker
    at the first that would not simply be acked."""
    for row in rows:
        properties, headers = row.wire_properties(), row.wire_headers()
        for consumer in bus.consumers_for(row.routing_key):
            verdict = handle_delivery(consumer, row.body(), properties, headers, row.routing_key, in_batch=True)
            if verdict.action != "ack":
                raise _ToBroker


def _handed_over(rows: list[OutboxMessage], tap: CopyToTap | None) -> list[OutboxMessage]:
    """Hand `rows` over in one transaction; returns the rows their handlers leased in turn."""
    written = Collector()
    try:
        with _collecting_into(written), transaction.atomic():
            claimed = set(queries.outbox_claim_handoff([row.pk for row in rows]))
            taken = [row for row in rows if row.pk in claimed]
            _apply(taken)
            if taken:
                queries.outbox_mark_handed_off([row.pk for row in taken])
    except Exception as error:  # noqa: BLE001 - a failed hand-off is the broker's to deliver, never the thread's end
        _rolled_back(rows, "a handler failed" if isinstance(error, _ToBroker) else f"{type(error).__name__}: {error}")
        drop_broken_connection()
        _release(rows)
        return []
    handed_off(taken, tap)
    return written.rows


@contextmanager
def _collecting_into(collector: Collector) -> Iterator[None]:
    token = handoff_collector.set(collector)
    try:
        yield
    finally:
        handoff_collector.reset(token)


def _release(rows: list[OutboxMessage]) -> None:
    """Give those of `rows` still unpublished to the relay now, to publish (their lease ended: `for_relay`
    does not take them back). If even that fails, a leased row's lease ends and the relay's sweep finds it."""
    if not rows:
        return
    try:
        with transaction.atomic():
            released = queries.outbox_release_to_relay([row.pk for row in rows])
    except DatabaseError:
        logger.warning("could not give %s messages back to the relay; it finds them once their lease ends", len(rows))
        drop_broken_connection()
        return
    _count_released(released)


def _count_released(routing_keys: list[str]) -> None:
    for routing_key in routing_keys:
        metrics.HANDOFFS_RELEASED.labels(routing_key).inc()


def _rolled_back(rows: list[OutboxMessage], reason: str) -> None:
    logger.warning("a hand-off of %s messages was rolled back (%s); they go through the broker", len(rows), reason)
