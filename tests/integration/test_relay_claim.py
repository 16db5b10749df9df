"""What wakes a relay and what it claims: the rows a notification named, or the oldest unpublished, never a row
another relay holds."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import OutboxMessage
from messaging.outbox import NOTIFY_CHANNEL, publish
from messaging.queries import outbox_claim as claim
from messaging.relay import _Listener
from tests.integration.support import in_another_transaction

pytestmark = pytest.mark.django_db(transaction=True)


def rows(count: int) -> list[int]:
    with transaction.atomic():
        return [publish("order.completed", {"order_id": str(uuid.uuid4())}).pk for _ in range(count)]


def claimed(batch_size: int = 200, ids: list[int] | None = None) -> list[int]:
    with transaction.atomic():
        return [row.pk for row in claim(batch_size, ids)]


def test_named_rows_are_claimed_by_key_and_a_published_one_is_not():
    first, second, third, fourth = rows(4)
    OutboxMessage.objects.filter(pk=second).update(published_at=timezone.now())

    assert claimed(ids=[third, second, first]) == [first, third]
    assert claimed(batch_size=1, ids=[third, first]) == [third]


def test_a_sweep_claims_the_oldest_unpublished_rows_first():
    first, second, third = rows(3)
    OutboxMessage.objects.filter(pk=first).update(published_at=timezone.now())

    assert claimed() == [second, third]
    assert claimed(batch_size=1) == [second]


def test_a_row_another_relay_holds_is_skipped_by_key_and_by_sweep():
    held, free = rows(2)

    with in_another_transaction(lambda: [row.pk for row in claim(1)]) as taken_by_the_other:
        assert taken_by_the_other == [held]
        assert claimed(ids=[held, free]) == [free]
        assert claimed() == [free]

    assert claimed(ids=[held]) == [held]


def test_the_listener_hands_over_the_ids_committed_and_asks_for_a_sweep_when_one_names_no_row(settings):
    settings.MESSAGING_TRANSPORT = "amqp"
    listener = _Listener()
    try:
        assert listener.wait(0.1) == []
        ids = rows(3)
        heard: list[int] = []
        for _ in range(10):  # normally one wait: the three arrive together at the commit
            heard += listener.wait(0.5)
            if len(heard) >= 3:
                break
        assert heard == ids

        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")  # as the trigger of a database not migrated yet sends it
        assert listener.wait(1.0) is None
    finally:
        listener.close()
