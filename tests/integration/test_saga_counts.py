"""/metrics' saga figures: a final saga is counted once and kept, and the figures always equal a full count."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from saga.models import Saga
from saga.selectors import _SagaTally

pytestmark = pytest.mark.django_db(transaction=True)


def saga(state: str, *, hours_ago: float, reason: str = "") -> Saga:
    row = Saga.objects.create(
        order_id=uuid.uuid4(),
        state=state,
        failure_reason=reason,
        customer_id="c",
        amount=Decimal("1.00"),
        currency="EUR",
        items=[],
        state_entered_at=timezone.now(),
    )
    Saga.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=hours_ago))
    return row


def full_count() -> dict:
    rows = Saga.objects.values_list("state", "failure_reason").annotate(n=Count("pk")).order_by()
    return {(state, reason): n for state, reason, n in rows}


def test_the_tally_equals_a_full_count_as_sagas_are_placed_and_finish_and_counts_settled_ones_once():
    tally = _SagaTally()
    for _ in range(3):
        saga("COMPLETED", hours_ago=5)
    saga("FAILED", hours_ago=4, reason="insufficient_funds")
    stuck = saga("COMPENSATING", hours_ago=3)  # open: the watermark may not pass it
    saga("COMPLETED", hours_ago=2)
    assert tally.counts() == full_count()

    saga("PAYMENT_PENDING", hours_ago=0)
    Saga.objects.filter(pk=stuck.pk).update(state="FAILED", failure_reason="timeout")
    assert (
        tally.counts()
        == full_count()
        == {
            ("COMPLETED", ""): 4,
            ("FAILED", "insufficient_funds"): 1,
            ("FAILED", "timeout"): 1,
            ("PAYMENT_PENDING", ""): 1,
        }
    )
    assert tally.counts() == full_count()  # asked again: nothing counted twice


def test_once_settled_a_call_does_not_count_every_saga_again():
    tally = _SagaTally()
    for _ in range(3):
        saga("COMPLETED", hours_ago=5)
    tally.counts()

    with CaptureQueriesContext(connection) as queries:
        assert tally.counts() == {("COMPLETED", ""): 3}

    counting = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counting and all("WHERE" in sql.upper() for sql in counting), counting


def test_sagas_deleted_start_the_tally_again():
    tally = _SagaTally()
    for hours in (5, 4):
        saga("COMPLETED", hours_ago=hours)
    assert tally.counts() == {("COMPLETED", ""): 2}

    Saga.objects.all().delete()
    saga("CANCELLED", hours_ago=1, reason="cancelled")

    assert tally.counts() == {("CANCELLED", "cancelled"): 1}
    assert Counter(tally.counts()) == Counter(full_count())
