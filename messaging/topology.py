"""The RabbitMQ topology (DESIGN §2), declared idempotently by every process that talks to the broker.

- `sagaflow` (topic): every message, by routing key.
- one quorum queue per consumer, bound to the keys it handles, with a delivery limit: a message that kills
  its consumer again and again is dead-lettered by the broker instead of looping. A key of the catalogue
  that the consumer no longer handles is unbound (an older version may have bound it).
- `<queue>.retry.<ms>ms`: delay queues. A retried message waits out the TTL there, then dead-letters
  straight back to its own consumer's queue through the default exchange (not to every subscriber).
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


def main_exchange() -> Exchange:
    return Exchange(settings.MESSAGING_EXCHANGE, type="topic", durable=True)


def dead_letter_exchange() -> Exchange:
    return Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)


def consumer_queue(name: str) -> Queue:
    routing_keys = sorted(bus.registry()[name])
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


def retry_queue_name(consumer: str, attempt: int) -> str:
    return f"{consumer}.retry.{int(retry_delay_s(attempt) * 1000)}ms"


def retry_queues(consumer: str) -> list[Queue]:
    queues = []
    for attempt in range(1, settings.MESSAGING_MAX_ATTEMPTS):
        queues.append(
            Queue(
                retry_queue_name(consumer, attempt),
                durable=True,
                queue_arguments={
                    "x-message-ttl": int(retry_delay_s(attempt) * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": consumer,
                },
            )
        )
    return queues


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER_QUEUE, exchange=dead_letter_exchange(), durable=True)


def declare_all(channel) -> None:
    """Declare every exchange and queue. Safe to call from any number of processes at any time."""
    main_exchange()(channel).declare()
    dead_letter_exchange()(channel).declare()
    dead_letter_queue()(channel).declare()
    for name in bus.consumers():
        consumer_queue(name)(channel).declare()
        for routing_key in retired_keys(name):
            channel.queue_unbind(name, settings.MESSAGING_EXCHANGE, routing_key)  # a no-op when not bound
        for queue in retry_queues(name):
            queue(channel).declare()


def retired_keys(consumer: str) -> list[str]:
    """The catalogue's keys that `consumer` does not handle: none of them may stay bound to its queue (the
    inventory queue of versions before 2026-12 was bound to `order.completed` and `order.failed`)."""
    handled = bus.registry()[consumer]
    return sorted(key for key in CATALOGUE if key not in handled)
