"""The RabbitMQ topology (DESIGN §2), declared idempotently by every process that talks to the broker.

- `sagaflow` (topic): every message, by routing key.
- `sagaflow.tap` (topic), bound to `sagaflow` with `#`: what crosses the broker, and an unconfirmed copy of each
  message that the local hand-off took past it (messaging/handoff.py). No consumer of ours reads it; a queue
  that an operator binds to it sees every message of the saga, whichever way it travelled.
- one quorum queue per consumer, bound to the keys it handles, with a delivery limit: a message that kills
  its consumer again and again is dead-lettered by the broker instead of looping. A key of the catalogue
  that the consumer no longer handles is unbound (an older version may have bound it).
- `<consumer>.compensations`: a second quorum queue of a consumer with compensation handlers (a refund, a
  release, the reply to a refund), bound to their keys only; the consumer's threads consume it beside its own
  queue and take what they received of it first, so an undo never waits behind the consumer's backlog of new
  work. Its messages are the consumer's in every other way.
- `<queue>.retry.<ms>ms`: delay queues of each of those queues. A retried message waits out the TTL there, then
  dead-letters straight back through the default exchange to the queue of its kind (not to every subscriber):
  a retried compensation to the compensation queue, so it keeps its place before new work.
- `sagaflow.dlx` (fanout) and `sagaflow.dead-letters`: the broker's and our dead letters, stored as rows by
  the worker.
"""

from __future__ import annotations

from django.conf import settings
from kombu import Exchange, Queue, binding

from messaging import bus
from messaging.catalogue import CATALOGUE
from messaging.consumers import retry_delay_s

DEAD_LETTER_EXCHANGE = "sagaflow.dlx"
DEAD_LETTER_QUEUE = "sagaflow.dead-letters"
TAP_SUFFIX = ".tap"


def main_exchange() -> Exchange:
    return Exchange(settings.MESSAGING_EXCHANGE, type="topic", durable=True)


def tap_exchange() -> Exchange:
    return Exchange(settings.MESSAGING_EXCHANGE + TAP_SUFFIX, type="topic", durable=True)


def dead_letter_exchange() -> Exchange:
    return Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)


COMPENSATIONS_SUFFIX = ".compensations"


def consumer_queue(name: str) -> Queue:
    return _quorum_queue(name, bound_keys(name))


def compensation_queue_name(consumer: str) -> str:
    return consumer + COMPENSATIONS_SUFFIX


def compensation_queue(consumer: str) -> Queue | None:
    """The queue of `consumer`'s compensations, or None when it has none."""
    keys = bus.compensations(consumer)
    return _quorum_queue(compensation_queue_name(consumer), keys) if keys else None


def consumer_queues(consumer: str) -> list[Queue]:
    """Every queue that `consumer`'s threads consume: its own, then its compensations' if it has any."""
    compensations = compensation_queue(consumer)
    return [consumer_queue(consumer), *([compensations] if compensations is not None else [])]


def queue_names(consumer: str) -> list[str]:
    return [queue.name for queue in consumer_queues(consumer)]


def queue_of(consumer: str, message_type: str) -> str:
    """The queue of `consumer` that a message of `message_type` belongs in: its compensations' or its own."""
    return compensation_queue_name(consumer) if message_type in bus.compensations(consumer) else consumer


def consumer_of(queue_name: str) -> str:
    """The consumer whose message a delivery from `queue_name` is: a compensation queue's is its consumer's."""
    base = queue_name.removesuffix(COMPENSATIONS_SUFFIX)
    if base != queue_name and base in bus.registry() and bus.compensations(base):
        return base
    return queue_name


def bound_keys(queue_name: str) -> list[str]:
    """The routing keys bound to `queue_name`, a consumer's queue or its compensations'."""
    consumer = consumer_of(queue_name)
    if consumer != queue_name:
        return bus.compensations(consumer)
    compensating = set(bus.compensations(consumer))
    return sorted(key for key in bus.registry()[consumer] if key not in compensating)


def _quorum_queue(name: str, routing_keys: list[str]) -> Queue:
    return Queue(
        name,
        exchange=main_exchange(),
        bindings=[_binding(key) for key in routing_keys],
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": settings.MESSAGING_DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        },
    )


def _binding(routing_key: str) -> binding:
    return binding(main_exchange(), routing_key=routing_key)


def retry_queue_name(queue_name: str, attempt: int) -> str:
    return f"{queue_name}.retry.{int(retry_delay_s(attempt) * 1000)}ms"


def retry_queues(queue_name: str) -> list[Queue]:
    """The delay queues of `queue_name` (a consumer's queue or its compensations'), one per attempt that can be
    retried; each hands a message back to `queue_name` when its TTL is over."""
    queues = []
    for attempt in range(1, settings.MESSAGING_MAX_ATTEMPTS):
        queues.append(
            Queue(
                retry_queue_name(queue_name, attempt),
                durable=True,
                queue_arguments={
                    "x-message-ttl": int(retry_delay_s(attempt) * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue_name,
                },
            )
        )
    return queues


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER_QUEUE, exchange=dead_letter_exchange(), durable=True)


def declare_all(channel) -> None:
    """Declare every exchange and queue. Safe to call from any number of processes at any time."""
    main_exchange()(channel).declare()
    tap_exchange()(channel).declare()
    channel.exchange_bind(tap_exchange().name, settings.MESSAGING_EXCHANGE, "#")
    dead_letter_exchange()(channel).declare()
    dead_letter_queue()(channel).declare()
    for name in bus.consumers():
        for queue in consumer_queues(name):
            queue(channel).declare()
            for routing_key in retired_keys(queue.name):
                channel.queue_unbind(queue.name, settings.MESSAGING_EXCHANGE, routing_key)  # a no-op when not bound
            for delay in retry_queues(queue.name):
                delay(channel).declare()


def retired_keys(queue_name: str) -> list[str]:
    """The catalogue's keys that must not stay bound to `queue_name`: those its consumer does not handle (the
    inventory queue of versions before 2026-12 was bound to `order.completed` and `order.failed`), and on a
    consumer's own queue, those of its compensation queue (bound to it before 2026-12-04). What was already
    queued there is still handled: the consumer's threads on either queue have all its handlers."""
    bound = set(bound_keys(queue_name))
    return sorted(key for key in CATALOGUE if key not in bound)
