"""Compensation is driven to its end: a lost refund is sent again with backoff, a saga that still does not
finish is flagged and counted, and stock held after a saga's end is asked for again.

A message is lost here as production loses one: it leaves the outbox and ends as a dead letter at its consumer
(its retries ran out, or the broker dead-lettered it), and nothing else of the system hears of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.utils import timezone

from config.access.models import AuditEntry
from config.audit import audit
from inventory.models import Reservation
from messaging import bus, inprocess
from messaging.models import DeadLetter, InboxMessage, OutboxMessage
from saga.models import Saga, SagaTransition
from saga.services import flagged_sagas, saga_sweep_timeouts, stuck_sagas
from tests.factories import make_account, make_product
from tests.integration.support import (
    balance,
    deliver_all_except,
    drain,
    ledger_of,
    make_overdue,
    order_of,
    outbox,
    payments_of,
    place,
    saga_of,
    stock,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inprocess", "timing")]

DEADLINE_S, CAP_S, MAX_ATTEMPTS = 30, 100, 3


@pytest.fixture
def timing(settings):
    settings.SAGA_COMPENSATION_DEADLINE_S = DEADLINE_S
    settings.SAGA_COMPENSATION_BACKOFF_MAX_S = CAP_S
    settings.SAGA_COMPENSATION_MAX_ATTEMPTS = MAX_ATTEMPTS
    settings.SAGA_SWEEP_INTERVAL_S = 5


def lose(order_id: str, routing_key: str) -> OutboxMessage:
    """The order's unsent `routing_key` message leaves the outbox and is dead-lettered by every consumer."""
    row = OutboxMessage.objects.get(order_id=order_id, routing_key=routing_key, published_at__isnull=True)
    now = timezone.now()
    OutboxMessage.objects.filter(pk=row.pk).update(published_at=now)
    for queue in bus.consumers_for(routing_key):
        DeadLetter.objects.create(
            message_id=str(row.message_id),
            routing_key=routing_key,
            queue=queue,
            body=json.dumps(row.payload),
            reason="retries_exhausted",
            first_failed_at=now,
            last_failed_at=now,
        )
    return row


def flow() -> None:
    """Deliver everything still in the outbox, as the in-process transport does."""
    inprocess.drain()
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


def make_due(order_id: str, *, by: timedelta = timedelta(seconds=1)) -> None:
    """Put the time the saga next looks at its compensation `by` in the past."""
    Saga.objects.filter(order_id=order_id).update(compensation_due_at=timezone.now() - by)


def sweep_once(order_id: str) -> tuple[datetime, datetime]:
    """Run the sweep, which must drive on exactly this saga; returns the time around it."""
    before = timezone.now()
    assert saga_sweep_timeouts() == 1
    assert saga_of(order_id).compensation_due_at is not None
    return before, timezone.now()


def assert_waits(order_id: str, seconds: float, around: tuple[datetime, datetime]) -> None:
    due = saga_of(order_id).compensation_due_at
    assert around[0] + timedelta(seconds=seconds) <= due <= around[1] + timedelta(seconds=seconds)


def resends(order_id: str) -> list[SagaTransition]:
    return list(
        SagaTransition.objects.filter(
            saga_id=order_id, from_state="COMPENSATING", to_state="COMPENSATING", message_type="saga.timeout"
        ).order_by("at", "id")
    )


def timed_out_waiting_for_stock(customer: str, sku: str, quantity: int = 1) -> str:
    """An order paid for whose inventory.reserve waits in a slow queue past the deadline: compensating."""
    order_id = place(customer, (sku, quantity))
    deliver_all_except("inventory.reserve")
    make_overdue(order_id)
    assert saga_sweep_timeouts() == 1
    return order_id


def compensating_with_its_refund_lost(customer: str, sku: str) -> str:
    """An order paid for whose stock did not answer in time: compensating, its first refund lost."""
    order_id = timed_out_waiting_for_stock(customer, sku)
    lose(order_id, "payment.refund")
    deliver_all_except()  # the stock answers late: reserved, while compensating
    saga = saga_of(order_id)
    assert (saga.state, saga.compensation_attempts, payments_of(order_id)) == (
        "COMPENSATING",
        1,
        [("CAPTURED", Decimal("10.00"))],
    )
    return order_id


def test_a_lost_refund_is_sent_again_with_backoff_until_it_is_answered_and_the_money_comes_back():
    # given an order compensating whose refund was lost
    sku = make_product(stock=5, price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    order_id = compensating_with_its_refund_lost(customer, sku)

    # then nothing happens before its deadline
    assert saga_sweep_timeouts() == 0
    # when its deadline passes, the refund is sent again, and the next wait is twice as long
    make_due(order_id)
    around = sweep_once(order_id)
    assert saga_of(order_id).compensation_attempts == 2
    assert_waits(order_id, 2 * DEADLINE_S, around)
    assert saga_sweep_timeouts() == 0
    # and lost again: after the last attempt allowed, the saga waits the cap, and is flagged
    lose(order_id, "payment.refund")
    make_due(order_id)
    around = sweep_once(order_id)
    assert (saga_of(order_id).compensation_attempts, saga_of(order_id).compensation_flagged) == (3, True)
    assert_waits(order_id, CAP_S, around)
    lose(order_id, "payment.refund")
    make_due(order_id)
    around = sweep_once(order_id)
    assert saga_of(order_id).compensation_attempts == 4
    assert_waits(order_id, CAP_S, around)

    # every attempt is a step of the timeline, and a refund in the outbox
    assert [step.emitted for step in resends(order_id)] == [["payment.refund"]] * 3
    assert [row.payload for row in outbox(order_id, "payment.refund")] == [
        {"order_id": order_id, "reason": "timeout"}
    ] * 4

    # when the fourth is answered, the order fails with its money back, refunded once, and nothing held
    flow()
    order = order_of(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", "timeout")
    assert saga_of(order_id).compensation_flagged is False
    assert payments_of(order_id) == [("REFUNDED", Decimal("10.00"))]
    assert ledger_of(order_id) == [("CAPTURE", Decimal("10.00")), ("REFUND", Decimal("10.00"))]
    assert balance(customer) == Decimal("100.00")
    assert stock(sku) == (5, 0, 5)
    assert audit(settled=True) == []


def test_a_refund_sent_again_while_the_first_is_only_slow_refunds_once():
    # given a compensating order whose refund is slow, not lost, and is sent again at the deadline
    sku = make_product(stock=5, price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    order_id = timed_out_waiting_for_stock(customer, sku)
    make_due(order_id)
    assert saga_sweep_timeouts() == 1

    # when both arrive
    flow()

    # then payments refunded once and answered both; the saga finished once
    assert len(outbox(order_id, "payment.refund")) == 2
    assert len(outbox(order_id, "payment.refunded")) == 2
    assert ledger_of(order_id) == [("CAPTURE", Decimal("10.00")), ("REFUND", Decimal("10.00"))]
    assert balance(customer) == Decimal("100.00")
    answers = [str(row.message_id) for row in outbox(order_id, "payment.refunded")]
    assert InboxMessage.objects.filter(consumer="saga", message_id__in=answers).count() == 2
    assert SagaTransition.objects.filter(saga_id=order_id, to_state="FAILED").count() == 1
    assert audit(settled=True) == []


def test_a_refund_sent_again_before_the_late_charge_closes_the_order_to_it():
    # given an order whose payment.process waits in a slow queue, timed out, its first refund lost
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (make_product(price="10.00").sku, 1))
    make_overdue(order_id)
    assert saga_sweep_timeouts() == 1
    lose(order_id, "payment.refund")

    # when the refund is sent again and arrives first, then the charge
    make_due(order_id)
    assert saga_sweep_timeouts() == 1
    deliver_all_except("payment.process")
    assert order_of(order_id).status == "FAILED"
    flow()

    # then payments refused the charge, and no money moved
    assert [row.payload["code"] for row in outbox(order_id, "payment.failed")] == ["order_closed"]
    assert payments_of(order_id) == [] and ledger_of(order_id) == []
    assert balance(customer) == Decimal("100.00")


def stuck_check() -> str:
    """What /health says of the stuck sagas (the other checks may fail too: no worker beats here)."""
    response = Client().get("/health")
    assert response.status_code == (200 if response.json()["failing"] == [] else 503)
    return response.json()["checks"]["stuck_sagas"]


def scrape_overdue() -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = Client().get("/metrics").content.decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "sagaflow_sagas_overdue"]
    return family.samples[0].value


def test_a_compensating_saga_past_its_deadline_with_no_sweep_is_counted_by_health_audit_and_metrics():
    # given a saga compensating, its refund lost, and no sweep running
    order_id = compensating_with_its_refund_lost(make_account().customer_id, make_product().sku)
    assert stuck_check() == "ok"
    assert [v for v in audit() if v.invariant == 1] == []

    # when it is past its deadline by more than the sweep has to act
    make_due(order_id, by=timedelta(seconds=6))

    # then the health check, the audit and the metric count it, naming its state (and the audit its order)
    assert stuck_check() == (
        "Unavailable: 1 sagas past their deadline (COMPENSATING 1); is the sweep (beat) running? (limit 0)"
    )
    [violation] = [v for v in audit() if v.invariant == 1]
    assert violation.subject == f"order {order_id}"
    assert violation.problem.startswith("PENDING, its saga in COMPENSATING past its deadline ")
    assert scrape_overdue() == 1
    assert list(stuck_sagas().values_list("order_id", flat=True)) == [saga_of(order_id).order_id]


def test_a_saga_flagged_after_its_last_attempt_is_counted_even_while_the_sweep_keeps_retrying():
    # given a saga that has sent its refund as often as allowed, each one lost, its next try not yet due
    order_id = compensating_with_its_refund_lost(make_account().customer_id, make_product().sku)
    for _ in range(MAX_ATTEMPTS - 1):
        make_due(order_id)
        assert saga_sweep_timeouts() == 1
        lose(order_id, "payment.refund")
    assert saga_of(order_id).compensation_attempts == MAX_ATTEMPTS
    assert saga_of(order_id).compensation_due_at > timezone.now()

    # then the health check, the audit and the metric count it as flagged
    assert stuck_check() == (
        f"Unavailable: 1 sagas flagged after {MAX_ATTEMPTS} compensation attempts without "
        "effect (COMPENSATING 1); see Admin → Sagas (limit 0)"
    )
    [violation] = [v for v in audit() if v.invariant == 1]
    assert violation.subject == f"order {order_id}"
    assert f"has sent payment.refund {MAX_ATTEMPTS} times without an answer (flagged" in violation.problem
    assert scrape_overdue() == 1
    assert [str(s.order_id) for s in flagged_sagas()] == [order_id]


def lose_all(order_id: str, routing_key: str) -> None:
    while OutboxMessage.objects.filter(order_id=order_id, routing_key=routing_key, published_at__isnull=True).exists():
        lose(order_id, routing_key)


def ended_with_its_release_lost() -> tuple[str, str]:
    """An order that timed out while its reservation waited in a slow queue: the reservation took the stock
    after all, and every inventory.release the saga sent was lost."""
    sku = make_product(stock=5, price="10.00").sku
    order_id = timed_out_waiting_for_stock(make_account(balance="100.00").customer_id, sku, quantity=2)
    lose_all(order_id, "inventory.release")
    deliver_all_except("inventory.release")  # the reservation lands late: the saga sends the release again
    lose_all(order_id, "inventory.release")
    assert (order_of(order_id).status, stock(sku)) == ("FAILED", (3, 0, 3))
    return order_id, sku


def test_stock_still_held_after_a_lost_release_is_reported_then_released_by_the_sweep():
    # given a failed order whose release was lost: its stock is still taken
    order_id, sku = ended_with_its_release_lost()

    # then, while the release may still be on its way, only the settled audit reports it
    assert [v for v in audit() if v.invariant == 3] == []
    assert any(v.invariant == 3 and v.subject == f"order {order_id}" for v in audit(settled=True))
    assert saga_sweep_timeouts() == 0

    # when its deadline has passed and no sweep ran, the audit and the health check report it
    make_due(order_id, by=timedelta(seconds=6))
    [violation] = [v for v in audit() if v.invariant == 3]
    assert violation.subject == f"order {order_id}"
    assert f"ended without success but holds {{'{sku}': 2}}" in violation.problem
    assert stuck_check() == (
        "Unavailable: 1 sagas past their deadline (FAILED 1); is the sweep (beat) running? (limit 0)"
    )

    # when the sweep runs, it asks the release again, and the stock comes back
    assert saga_sweep_timeouts() == 1
    step = SagaTransition.objects.filter(saga_id=order_id).order_by("at", "id").last()
    assert (step.from_state, step.to_state, step.message_type, step.emitted) == (
        "FAILED",
        "FAILED",
        "saga.stock_held",
        ["inventory.release"],
    )
    flow()
    assert stock(sku) == (5, 0, 5)
    assert Reservation.objects.get(order_id=order_id).status == "RELEASED"
    assert audit(settled=True) == []
    assert saga_sweep_timeouts() == 0
    assert stuck_check() == "ok"


def test_a_completed_order_keeps_its_goods_and_the_sweep_asks_nothing_of_it():
    # given a completed order: its reservation took the goods, and inventory needs no order.completed
    sku = make_product(stock=5, price="10.00").sku
    order_id = place(make_account(balance="100.00").customer_id, (sku, 2))
    drain()
    assert (order_of(order_id).status, stock(sku)) == ("COMPLETED", (3, 0, 3))
    assert Reservation.objects.get(order_id=order_id).status == "COMMITTED"
    # nothing it sent awaits an effect, so the console shows no attempt and no due time
    assert (saga_of(order_id).compensation_attempts, saga_of(order_id).compensation_due_at) == (0, None)

    # when it is long past every deadline, the sweep finds nothing to ask again
    make_due(order_id, by=timedelta(days=1))
    assert saga_sweep_timeouts() == 0
    assert stuck_check() == "ok"
    assert len(outbox(order_id, "order.completed")) == 1
    assert audit(settled=True) == []


def test_a_failed_order_that_never_took_stock_is_not_watched_by_the_sweep():
    # given orders that failed for want of stock: nothing was taken, and the saga sent no release
    sku = make_product(stock=0, price="10.00").sku
    order_id = place(make_account(balance="100.00").customer_id, (sku, 1))
    drain()
    assert (order_of(order_id).status, order_of(order_id).failure_reason) == ("FAILED", "out_of_stock")

    # then nothing it sent awaits an effect: its refund was answered, and the console shows no attempt
    assert (saga_of(order_id).compensation_attempts, saga_of(order_id).compensation_due_at) == (0, None)
    # and its saga is not among those the sweep checks for stock still held, whatever their number
    assert saga_of(order_id).release_sent_at is None
    assert outbox(order_id, "inventory.release") == []
    make_due(order_id, by=timedelta(days=1))
    assert saga_sweep_timeouts() == 0
    assert audit(settled=True) == []


def test_a_declined_order_leaves_nothing_for_the_sweep_to_wait_for():
    # given an order whose payment was declined: it took neither money nor stock
    order_id = place(make_account(balance="1.00").customer_id, (make_product(stock=5, price="10.00").sku, 1))
    drain()
    assert (order_of(order_id).status, order_of(order_id).failure_reason) == ("FAILED", "insufficient_funds")

    # then the console shows no attempt and no due time, and the sweep asks nothing of it
    assert (saga_of(order_id).compensation_attempts, saga_of(order_id).compensation_due_at) == (0, None)
    make_due(order_id, by=timedelta(days=1))
    assert saga_sweep_timeouts() == 0


def test_two_sweeps_at_once_send_each_refund_again_once():
    # given twenty compensating sagas past their deadline
    sku, customer = make_product(stock=100).sku, make_account(balance="1000.00").customer_id
    orders = [place(customer, (sku, 1)) for _ in range(20)]
    for order_id in orders:
        make_overdue(order_id)
    assert saga_sweep_timeouts() == 20
    Saga.objects.update(compensation_due_at=timezone.now() - timedelta(seconds=1))

    # when two schedulers sweep at the same moment
    start = threading.Barrier(2)

    def sweep(_: int) -> int:
        try:
            start.wait(10)
            return saga_sweep_timeouts()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(sweep, range(2), timeout=60))

    # then each saga sent its refund again exactly once
    assert sum(counts) == 20
    assert sorted(
        SagaTransition.objects.filter(from_state="COMPENSATING", message_type="saga.timeout").values_list(
            "saga_id", flat=True
        )
    ) == sorted(Saga.objects.values_list("order_id", flat=True))
    assert set(Saga.objects.values_list("compensation_attempts", flat=True)) == {2}


# The admin: find the sagas that do not finish, and send their compensation again.


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops-comp", password="x" * 12))
    return client


def listed(client: Client, query: str) -> str:
    response = client.get(f"/admin/saga/saga/?{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_the_admin_finds_flagged_and_retried_sagas_and_sends_a_compensation_again(staff):
    # given a saga flagged after its last attempt, one retried once, and one that is fine
    sku, customer = make_product(stock=50).sku, make_account(balance="1000.00").customer_id
    flagged = compensating_with_its_refund_lost(customer, sku)
    Saga.objects.filter(order_id=flagged).update(compensation_attempts=MAX_ATTEMPTS)
    retried = compensating_with_its_refund_lost(customer, sku)
    Saga.objects.filter(order_id=retried).update(compensation_attempts=2)
    fine = place(customer, (sku, 1))

    # then the filters find them
    page = listed(staff, "compensation=flagged")
    assert flagged in page and retried not in page and fine not in page
    page = listed(staff, "compensation=retried")
    assert flagged in page and retried in page and fine not in page
    page = listed(staff, "stuck=yes")
    assert flagged in page and retried not in page and fine not in page

    # when an operator sends the compensation of the flagged one, and of the pending one, again now
    response = staff.post(
        "/admin/saga/saga/", {"action": "retry_compensation", "_selected_action": [flagged, fine]}, follow=True
    )

    # then the flagged one sent its refund again, audited; the pending one was refused with the reason
    assert response.status_code == 200
    assert saga_of(flagged).compensation_attempts == MAX_ATTEMPTS + 1
    assert len(outbox(flagged, "payment.refund")) == 2
    (entry,) = AuditEntry.objects.filter(action="saga.retry_compensation")
    assert (entry.actor, entry.target) == ("ops-comp", f"order:{flagged}")
    assert entry.details == {"saga_state": "COMPENSATING", "attempts_before": MAX_ATTEMPTS}
    assert sorted(str(message) for message in response.context["messages"]) == sorted(
        [
            f"order {flagged}: sent payment.refund again",
            f"order {fine}: the saga is PAYMENT_PENDING and waits on no compensation",
        ]
    )
    assert saga_of(fine).state == "PAYMENT_PENDING" and len(outbox(fine, "payment.refund")) == 0
    # and once the refund flows, the order fails and nothing is flagged any more
    flow()
    assert order_of(flagged).status == "FAILED"
    assert flagged not in listed(staff, "compensation=flagged")


def test_the_retry_action_releases_the_stock_an_ended_saga_still_holds(staff):
    order_id, sku = ended_with_its_release_lost()

    staff.post("/admin/saga/saga/", {"action": "retry_compensation", "_selected_action": [order_id]})
    flow()

    assert stock(sku) == (5, 0, 5)
    assert AuditEntry.objects.filter(action="saga.retry_compensation", target=f"order:{order_id}").exists()


def test_staff_who_may_only_view_sagas_cannot_send_a_compensation_again():
    user = User.objects.create_user("saga-viewer", password="x" * 12, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_saga"))
    client = Client()
    client.force_login(user)
    order_id = compensating_with_its_refund_lost(make_account().customer_id, make_product().sku)

    page = listed(client, "")
    client.post("/admin/saga/saga/", {"action": "retry_compensation", "_selected_action": [order_id]})

    assert 'value="retry_compensation"' not in page
    assert saga_of(order_id).compensation_attempts == 1
    assert not AuditEntry.objects.filter(action="saga.retry_compensation").exists()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"SAGA_COMPENSATION_DEADLINE_S": "60", "SAGA_COMPENSATION_BACKOFF_MAX_S": "30"},
            "SAGA_COMPENSATION_BACKOFF_MAX_S",
        ),
        ({"SAGA_COMPENSATION_MAX_ATTEMPTS": "0"}, "SAGA_COMPENSATION_MAX_ATTEMPTS"),
        ({"SAGA_COMPENSATION_DEADLINE_S": "soon"}, "SAGA_COMPENSATION_DEADLINE_S"),
    ],
)
def test_a_bad_compensation_setting_stops_the_start_and_names_the_variable(env, named):
    # The embedded mode (no database or broker URL) starts with nothing else set.
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("SAGA_") and k not in {"DATABASE_URL", "BROKER_URL"}
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(__file__).resolve().parents[2],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr
