"""A broker that refuses what the relay publishes (a nack) does not make it spin: each refused row is held back,
longer at every refusal, and the rows committed meanwhile, named by their NOTIFY, are still published at once.

First with a stand-in publisher that refuses the rows of a backlog, then with RabbitMQ itself, through a queue
whose length limit rejects every publish (x-max-length 0, x-overflow reject-publish).
"""

from __future__ import annotations

import collections
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from kombu import Queue

from messaging.broker import connected
from messaging.models import OutboxMessage
from messaging.outbox import republish
from messaging.relay import ConfirmingPublisher, Relay
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_backoff(settings) -> None:
    settings.OUTBOX_BATCH_SIZE = 20
    settings.OUTBOX_SWEEP_INTERVAL_S = 0.1
    settings.OUTBOX_REFUSED_BACKOFF_S = 0.5
    settings.OUTBOX_REFUSED_BACKOFF_MAX_S = 2.0


def rows(count: int, queue: str) -> list[int]:
    with transaction.atomic():
        return [
            republish(
                message_id=str(uuid.uuid4()),
                routing_key="order.completed",
                payload={"order_id": str(uuid.uuid4())},
                target_queue=queue,
            ).pk
            for _ in range(count)
        ]


def published(pk: int) -> bool:
    return OutboxMessage.objects.filter(pk=pk, published_at__isnull=False).exists()


@contextmanager
def running(target) -> Iterator[threading.Event]:
    """Runs `target(stop)` in a thread, with a database connection of its own, until the block ends."""
    stop = threading.Event()

    def run() -> None:
        try:
            target(stop)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "the relay did not stop"


class RefusingPublisher:
    """Stands in for the broker: refuses every row of `refused_queue`, confirms the others, and counts."""

    tap = None  # the hand-off is off: nothing to copy

    def __init__(self, refused_queue: str):
        self.refused_queue = refused_queue
        self.offered: collections.Counter[int] = collections.Counter()

    def publish(self, batch: list[OutboxMessage]) -> tuple[list[OutboxMessage], int]:
        self.offered.update(row.pk for row in batch)
        confirmed = [row for row in batch if row.target_queue != self.refused_queue]
        return confirmed, len(batch) - len(confirmed)

    def keep_alive(self) -> None:
        pass


def test_refused_rows_are_offered_again_with_backoff_and_new_rows_are_published_meanwhile():
    backlog = rows(50, "full")
    publisher = RefusingPublisher("full")

    with running(lambda stop: Relay(stop).serve(publisher)):
        wait_for(lambda: all(publisher.offered[pk] for pk in backlog), timeout=10, message="the backlog to be offered")
        # when a row is committed while the broker refuses the backlog, then it leaves at once
        (fresh,) = rows(1, "open")
        wait_for(lambda: published(fresh), timeout=2, interval=0.02, message="the new row to be published")
        threading.Event().wait(3)

    # each refused row was offered again after 0.5, 1 and 2 s, then every 2 s: a handful of times in 4 s or so,
    # not thousands
    assert max(publisher.offered[pk] for pk in backlog) <= 6, publisher.offered.most_common(3)
    assert min(publisher.offered[pk] for pk in backlog) >= 2
    assert not OutboxMessage.objects.filter(pk__in=backlog, published_at__isnull=False).exists()
    assert publisher.offered[fresh] == 1


class CountingPublisher(ConfirmingPublisher):
    offered: collections.Counter[int] = collections.Counter()

    def publish(self, batch: list[OutboxMessage]) -> tuple[list[OutboxMessage], int]:
        CountingPublisher.offered.update(row.pk for row in batch)
        return super().publish(batch)


@pytest.fixture
def queues() -> Iterator[tuple[str, str]]:
    """A queue that rejects every publish, and one that takes them."""
    full, open_ = f"full-{uuid.uuid4().hex[:8]}", f"open-{uuid.uuid4().hex[:8]}"
    declared = [Queue(full, queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"}), Queue(open_)]
    with connected() as broker:
        for queue in declared:
            queue(broker.default_channel).declare()
    yield full, open_
    with connected() as broker:
        for queue in declared:
            queue(broker.default_channel).delete()


def test_a_queue_that_rejects_publishes_holds_its_rows_back_and_the_relay_goes_on_with_the_others(queues):
    full, open_ = queues
    backlog = rows(30, full)
    CountingPublisher.offered.clear()

    with running(lambda stop: Relay(stop, publisher=CountingPublisher).run()):
        wait_for(
            lambda: all(CountingPublisher.offered[pk] for pk in backlog),
            timeout=15,
            message="the backlog to be offered to the broker",
        )
        (fresh,) = rows(1, open_)
        wait_for(lambda: published(fresh), timeout=3, interval=0.02, message="the new row to be published")
        threading.Event().wait(3)

    assert max(CountingPublisher.offered[pk] for pk in backlog) <= 6, CountingPublisher.offered.most_common(3)
    assert not OutboxMessage.objects.filter(pk__in=backlog, published_at__isnull=False).exists()
    with connected() as broker:
        assert broker.default_channel.queue_declare(open_, passive=True).message_count == 1
