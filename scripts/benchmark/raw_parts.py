"""The raw parts a saga is made of, measured alone before the phases of a self-started run.

2-row transactions, confirmed publishes one at a time and with a window, consumes through kombu, each on the
run's own database and vhost, so that the product's cost per saga can be set against the sum of what it is
made of on this machine, at this time.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .topology import pg_connect

PROBE_QUEUE = "bench-probe"
# What one completed saga takes of the parts, single-threaded: 5 transactions (the POST's and four handlers'), 6
# windowed publishes (the relay's: order.created, payment.process, payment.processed, inventory.reserve,
# inventory.reserved, order.completed) and 4 deliveries (no consumer here hears order.created or
# order.completed). The HTTP request and the relay's own bookkeeping are not in it.
SAGA_TRANSACTIONS, SAGA_PUBLISHES, SAGA_DELIVERIES = 5, 6, 4


def measure_raw_parts(database_url: str, broker_url: str, seconds: float = 1.5) -> dict[str, float]:
    """The parts a saga is made of, alone, on this machine now: what the product's cost per saga is set against.

    Single-threaded rates of 2-row transactions (fsync on), of persistent messages confirmed one at a time and
    with a window, all on a quorum queue as the product's, and of messages consumed and acked through kombu.
    """
    rates = {
        "pg_two_row_transactions_per_s": pg_two_row_transactions_per_s(database_url, seconds),
        **amqp_rates(broker_url, seconds),
    }
    rates["one_sagas_share_ms"] = saga_share_ms(rates)
    return {key: round(value, 2) for key, value in rates.items()}


def saga_share_ms(rates: dict[str, float]) -> float:
    """Milliseconds of one saga's transactions, windowed publishes and deliveries at the measured rates."""
    return 1000 * (
        SAGA_TRANSACTIONS / rates["pg_two_row_transactions_per_s"]
        + SAGA_PUBLISHES / rates["amqp_confirmed_publishes_windowed_per_s"]
        + SAGA_DELIVERIES / rates["kombu_consumed_per_s"]
    )


def pg_two_row_transactions_per_s(database_url: str, seconds: float) -> float:
    with pg_connect(database_url) as conn:
        conn.execute(
            "CREATE TABLE bench_probe (id bigserial PRIMARY KEY, body jsonb NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )
        try:
            conn.autocommit = False
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                conn.execute("INSERT INTO bench_probe (body) VALUES (%s), (%s)", ('{"a": 1}', '{"b": 2}'))
                conn.commit()
                done += 1
            return done / (time.perf_counter() - started)
        finally:
            conn.rollback()
            conn.autocommit = True
            conn.execute("DROP TABLE bench_probe")


def amqp_rates(broker_url: str, seconds: float) -> dict[str, float]:
    """Confirmed publishes one at a time, then with a window, then the consumption of all of them."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as broker:
        broker.ensure_connection(max_retries=3)
        channel = broker.connection.channel()
        channel.queue_declare(PROBE_QUEUE, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
        try:
            channel.confirm_select()
            body = json.dumps({"order_id": str(uuid.uuid4()), "amount": "10.00"}).encode()
            one_at_a_time, one_at_a_time_rate = publish_one_at_a_time(channel, body, seconds)
            windowed, windowed_rate = publish_windowed(broker, channel, body, seconds, already=one_at_a_time)
            return {
                "amqp_confirmed_publishes_one_at_a_time_per_s": one_at_a_time_rate,
                "amqp_confirmed_publishes_windowed_per_s": windowed_rate,
                "kombu_consumed_per_s": consumed_per_s(broker, one_at_a_time + windowed),
            }
        finally:
            broker.channel().queue_delete(PROBE_QUEUE)


def publish_one_at_a_time(channel: Any, body: bytes, seconds: float) -> tuple[int, float]:
    """(messages published, per second), each waiting for its confirm."""
    import amqp

    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        channel.basic_publish_confirm(amqp.Message(body, delivery_mode=2), exchange="", routing_key=PROBE_QUEUE)
        done += 1
    return done, done / (time.perf_counter() - started)


def publish_windowed(broker: Any, channel: Any, body: bytes, seconds: float, *, already: int) -> tuple[int, float]:
    """(messages published, per second), in windows of 100 whose confirms are awaited together.

    `already` is how many the channel has published before: delivery tags count from the first.
    """
    import amqp

    acked: list[int] = []
    channel.events["basic_ack"].add(lambda tag, multiple: acked.append(tag))
    windowed, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            channel.basic_publish(amqp.Message(body, delivery_mode=2), exchange="", routing_key=PROBE_QUEUE)
        windowed += 100
        while not acked or max(acked) < already + windowed:
            broker.connection.drain_events(timeout=10)
    return windowed, windowed / (time.perf_counter() - started)


def consumed_per_s(broker: Any, total: int) -> float:
    """Consumes and acks the `total` messages on the probe queue through kombu (30 s at most)."""
    from kombu import Consumer, Queue

    consumed = 0

    def on_message(message: Any) -> None:
        nonlocal consumed
        message.ack()
        consumed += 1

    consumer_channel = broker.channel()
    consumer_channel.basic_qos(0, 100, False)
    started = time.perf_counter()
    with Consumer(consumer_channel, queues=[Queue(PROBE_QUEUE, no_declare=True)], on_message=on_message):
        while consumed < total and time.perf_counter() - started < 30:
            broker.drain_events(timeout=5)
    return consumed / (time.perf_counter() - started)
