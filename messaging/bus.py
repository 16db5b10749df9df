"""The message bus: which consumer handles which message, and the one dispatch path every transport uses.

`dispatch()` validates the payload, then applies the handler and records the inbox row in one transaction,
so a redelivered message is recognised and skipped. Both the AMQP consumers and the in-process transport
call it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import cache, partial
from typing import Protocol, runtime_checkable

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import transaction
from django.utils import timezone

from config.kernel import sql
from messaging import correlation, metrics, queries, tracing
from messaging.catalogue import validate_payload
from messaging.envelope import Envelope
from messaging.errors import UnknownMessageTypeError
from messaging.models import InboxMessage

logger = logging.getLogger(__name__)

Handler = Callable[[Envelope], None]


@runtime_checkable
class Consumer(Protocol):
    """An installed app that consumes messages, as its AppConfig says: the name of its consumer (also its
    queue's), and what it handles."""

    consumer: str

    def handlers(self) -> Mapping[str, Handler]: ...


PROCESSED = "processed"
DUPLICATE = "duplicate"


def outward(handler: Handler) -> Handler:
    """Mark a handler whose effect is outside the database (an HTTP call to someone else's server).

    It runs outside the inbox's transaction, so that what it writes of each attempt is kept when the attempt
    fails, and the inbox row is written only once it has succeeded: a message redelivered after a crash acts
    again (at least once), and the receiver deduplicates. Its consumer handles each delivery alone, never in a
    batch, and in the embedded mode has a thread of its own, so that a slow server never stalls the others.
    """
    handler.outward = True  # type: ignore[attr-defined]
    return handler


def is_outward(handler: Handler) -> bool:
    return bool(getattr(handler, "outward", False))


def compensation(handler: Handler) -> Handler:
    """Mark a handler that undoes an earlier step of a saga (a refund, a release).

    Over the broker its messages go to a queue of their own beside the consumer's (`<consumer>.compensations`),
    which each of the consumer's threads consumes too and takes first: a refund never waits behind a flash
    sale's worth of new payments in the consumer's main queue. The handler is the consumer's like any other:
    the same inbox, the same dead letters.
    """
    handler.compensation = True  # type: ignore[attr-defined]
    return handler


def is_compensation(handler: Handler) -> bool:
    return bool(getattr(handler, "compensation", False))


def compensations(consumer: str) -> list[str]:
    """The routing keys of `consumer`'s compensation handlers."""
    return sorted(key for key, handler in registry()[consumer].items() if is_compensation(handler))


def outward_consumers() -> list[str]:
    """The consumers with an outward handler: they wait on servers that are not ours."""
    return [name for name, handlers in registry().items() if any(map(is_outward, handlers.values()))]


@cache
def registry() -> dict[str, dict[str, Handler]]:
    """consumer name (also its queue's name) -> routing key -> handler.

    Each installed app that consumes messages says so on its AppConfig (`Consumer`): `consumer`, the name,
    and `handlers()`, what it handles. Found at the first call, as the admin finds each app's admin module, and
    again after a test changes the settings (the apps installed, the saga in use).
    """
    found: dict[str, dict[str, Handler]] = {}
    for app in apps.get_app_configs():
        if not isinstance(app, Consumer):
            continue
        if app.consumer in found:
            raise ImproperlyConfigured(
                f"two installed apps name the consumer {app.consumer!r}: {app.label} and another"
            )
        found[app.consumer] = dict(app.handlers())
    return found


setting_changed.connect(lambda **kwargs: registry.cache_clear(), weak=False, dispatch_uid="messaging.bus.registry")


def consumers() -> list[str]:
    return list(registry())


def consumers_for(routing_key: str) -> list[str]:
    return [name for name, handlers in registry().items() if routing_key in handlers]


def dispatch(consumer: str, envelope: Envelope, *, in_batch: bool = False) -> str:
    """Apply one message for one consumer, exactly once. Returns PROCESSED or DUPLICATE.

    Raises a PermanentMessageError (dead-letter it) or any other exception (classify it, maybe retry).
    The caller acks only after this returns and the transaction is committed. `in_batch`: the caller's
    transaction holds several messages and is rolled back whole if one fails, so no savepoint is taken, and
    the message is counted and logged when that transaction commits: never for an attempt rolled back.
    """
    handler = registry().get(consumer, {}).get(envelope.routing_key)
    if handler is None:
        raise UnknownMessageTypeError(envelope.routing_key)
    validate_payload(envelope.routing_key, envelope.payload)
    order_id = envelope.order_id or str(envelope.payload.get("order_id", ""))
    started = time.perf_counter()
    with correlation.bound(
        correlation_id=envelope.correlation_id or correlation.new_id(),
        causation_id=envelope.causation_id or None,
        message_id=envelope.message_id,
        order_id=order_id or None,
        saga_state=None,
    ):
        try:
            if is_outward(handler):
                with tracing.span(f"handle {envelope.routing_key}"):
                    fresh = _apply_outward(consumer, envelope, handler)
            else:
                with transaction.atomic(savepoint=not in_batch):
                    with tracing.span(f"inbox {consumer}") as span:
                        fresh = queries.inbox_record(
                            consumer=consumer,
                            message_id=envelope.message_id,
                            routing_key=envelope.routing_key,
                            processed_at=timezone.now(),
                        )
                        tracing.set_attributes(span, sagaflow__inbox__outcome=PROCESSED if fresh else DUPLICATE)
                    if fresh:
                        # The rows the handler inserts (its effects, its outbox messages) go out together when
                        # it returns: one statement on PostgreSQL, where each would be a round trip.
                        with tracing.span(f"handle {envelope.routing_key}") as span, sql.batched():
                            handler(envelope)
                            tracing.set_attributes(span, sagaflow__saga__state=correlation.saga_state.get() or "")
        except Exception:
            # A failure in a batch is not counted: the delivery is handed over again alone, and counted there.
            if not in_batch:
                metrics.handled(consumer, envelope.routing_key, "failed", time.perf_counter() - started)
            raise
        context = correlation.snapshot()  # with what the handler added, e.g. the state the saga moved to
    outcome = PROCESSED if fresh else DUPLICATE
    # A batch's report runs at its commit, after the message's span has ended: it names that span itself.
    report = partial(_report, consumer, envelope, outcome, time.perf_counter() - started, context, tracing.log_fields())
    if in_batch:
        transaction.on_commit(report, robust=True)
    else:
        report()
    return outcome


def _report(
    consumer: str, envelope: Envelope, outcome: str, seconds: float, context: dict, traced: dict[str, str]
) -> None:
    """Count and log one message applied, in the context and with the span it was handled in."""
    metrics.handled(consumer, envelope.routing_key, outcome, seconds)
    with correlation.bound(**context):
        if outcome == DUPLICATE:
            logger.info("duplicate %s skipped by %s", envelope.routing_key, consumer, extra=traced)
            return
        logger.info(
            "handled %s in %s",
            envelope.routing_key,
            consumer,
            extra={
                "consumer": consumer,
                "message_type": envelope.routing_key,
                "duration_ms": round(seconds * 1000, 2),
                **traced,
            },
        )


def _apply_outward(consumer: str, envelope: Envelope, handler: Handler) -> bool:
    """Apply an outward handler, then record it in the inbox; False when it was applied before."""
    if InboxMessage.objects.filter(consumer=consumer, message_id=envelope.message_id).exists():
        return False
    handler(envelope)
    with transaction.atomic():
        queries.inbox_record(
            consumer=consumer,
            message_id=envelope.message_id,
            routing_key=envelope.routing_key,
            processed_at=timezone.now(),
        )
    return True
