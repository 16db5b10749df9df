"""The operations overview against PostgreSQL with known rows: each figure, and the admin list behind each link
counting the same rows."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from config.overview import overview
from messaging.models import DeadLetter, OutboxMessage, WorkerHeartbeat
from saga.models import Saga

pytestmark = pytest.mark.django_db(transaction=True)

# Half past a minute, so that no saga below ends in another minute than the one it is placed in.
NOW = timezone.now().replace(second=30, microsecond=0)


def saga(state: str, *, created_min_ago: float, took_s: float | None = None, reason: str = "") -> Saga:
    """A saga placed `created_min_ago` minutes before NOW, in `state` since `took_s` seconds after that."""
    created = NOW - timedelta(minutes=created_min_ago)
    entered = created + timedelta(seconds=took_s or 0)
    row = Saga.objects.create(
        order_id=uuid.uuid4(),
        state=state,
        state_entered_at=entered,
        failure_reason=reason,
        customer_id="c",
        amount=Decimal("1.00"),
        currency="EUR",
        items=[],
    )
    Saga.objects.filter(pk=row.pk).update(created_at=created)
    return row


def letter(*, queue: str, routing_key: str, reason: str, min_ago: float, **status) -> DeadLetter:
    at = NOW - timedelta(minutes=min_ago)
    return DeadLetter.objects.create(
        message_id=str(uuid.uuid4()),
        routing_key=routing_key,
        queue=queue,
        body="{}",
        reason=reason,
        first_failed_at=at,
        last_failed_at=at,
        **status,
    )


@pytest.fixture
def known_rows():
    # ten minutes ago: 3 placed; two completed after 2 s and 4 s, one failed for want of funds after 1 s
    saga("COMPLETED", created_min_ago=10, took_s=2)
    saga("COMPLETED", created_min_ago=10, took_s=4)
    saga("FAILED", created_min_ago=10, took_s=1, reason="insufficient_funds")
    # five minutes ago: 2 placed; one timed out after 100 s, one still waits for its payment
    saga("FAILED", created_min_ago=5, took_s=100, reason="timeout")
    saga("PAYMENT_PENDING", created_min_ago=5)
    # long before the window: completed, counted by state but in no chart
    saga("COMPLETED", created_min_ago=60 * 24, took_s=3)
    # waiting for its payment for four hours, before the window; past the 30 s deadline, as the one above
    saga("PAYMENT_PENDING", created_min_ago=240)

    letter(queue="payments", routing_key="payment.process", reason="handler_error", min_ago=3)
    letter(queue="payments", routing_key="payment.process", reason="handler_error", min_ago=2)
    letter(queue="saga", routing_key="payment.processed", reason="invalid_payload", min_ago=2)
    letter(queue="saga", routing_key="payment.processed", reason="invalid_payload", min_ago=1, replayed_at=NOW)
    letter(queue="saga", routing_key="payment.failed", reason="invalid_payload", min_ago=1, discarded_at=NOW)

    pending = OutboxMessage.objects.create(routing_key="payment.process", payload={})
    OutboxMessage.objects.filter(pk=pending.pk).update(created_at=NOW - timedelta(seconds=42))
    OutboxMessage.objects.create(routing_key="payment.process", payload={}, published_at=NOW)

    # the heartbeats' wedged check reads the clock itself: beats relative to it
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="w1:1", loop="payments", started_at=now, beat_at=now - timedelta(seconds=2))
    WorkerHeartbeat.objects.create(worker="w1:1", loop="saga", started_at=now, beat_at=now - timedelta(seconds=300))


def minute(view, minutes_ago: int) -> int:
    return view.minutes.index((NOW - timedelta(minutes=minutes_ago)).replace(second=0, microsecond=0))


def test_the_overview_counts_the_known_rows(known_rows):
    view = overview(now=NOW)

    states = {figure.label: figure.value for figure in view.states}
    assert states["COMPLETED"] == 3 and states["FAILED"] == 2 and states["PAYMENT_PENDING"] == 2
    assert states["INVENTORY_PENDING"] == 0

    flow = {series.label: series.values for series in view.flow}
    assert sum(flow["started"]) == 5
    assert flow["started"][minute(view, 10)] == 3 and flow["started"][minute(view, 5)] == 2
    assert sum(flow["completed"]) == 2 and flow["completed"][minute(view, 10)] == 2
    assert sum(flow["failed"]) == 2 and sum(flow["cancelled"]) == 0
    failures = {series.label: sum(series.values) for series in view.failures_by_reason}
    assert failures == {"insufficient_funds": 1, "timeout": 1}
    assert view.finished_in_window == 4

    # the four that ended in the window took 1, 2, 4 and 100 s: percentile_cont interpolates between ranks
    assert view.latency_s["p50"] == pytest.approx(3.0)
    assert view.latency_s["p99"] == pytest.approx(4 + (100 - 4) * 0.97)

    assert view.stuck.value == 2

    groups = {(g["queue"], g["routing_key"], g["reason"]): g["n"] for g in view.dead_letter_groups}
    assert groups == {
        ("payments", "payment.process", "handler_error"): 2,
        ("saga", "payment.processed", "invalid_payload"): 1,
    }
    assert view.dead_letters_open.value == 3
    assert sum(view.dead_letter_growth.values) == 5  # every letter that failed in the window, open or not

    assert view.outbox_pending.value == 1
    assert view.outbox_oldest_age_s == pytest.approx(42, abs=1)

    beats = {(row["worker"], row["loop"]): row for row in view.heartbeats}
    assert not beats["w1:1", "payments"]["silent"]
    assert beats["w1:1", "saga"]["silent"] and beats["w1:1", "saga"]["wedged"]
    assert "saga" in view.missing_loops and "payments" not in view.missing_loops


def listed(client: Client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, url
    # Django drops a parameter it does not know and redirects with ?e=1: the filter would be ignored
    assert "e=1" not in response.get("Location", ""), url
    return response.context["cl"].result_count


def test_every_figure_links_to_an_admin_list_of_the_same_rows(known_rows):
    client = Client()
    client.force_login(User.objects.create_superuser(f"ops-{uuid.uuid4().hex[:6]}", password="x" * 12))
    view = overview(now=NOW)

    for figure in view.states:
        assert listed(client, figure.url) == figure.value, figure
    for series in [*view.flow, *view.failures_by_reason, view.dead_letter_growth]:
        for value, minute in zip(series.values, view.minutes, strict=True):
            if value:
                assert listed(client, series.url_at(minute)) == value, (series.label, minute)
    for figure in view.failure_totals:
        assert listed(client, figure.url) == figure.value, figure
    assert listed(client, view.ended_url) == view.finished_in_window
    assert listed(client, view.stuck.url) == view.stuck.value
    assert listed(client, view.flagged.url) == view.flagged.value == 0
    assert listed(client, view.dead_letters_open.url) == view.dead_letters_open.value
    for group in view.dead_letter_groups:
        assert listed(client, group["url"]) == group["n"], group
    assert listed(client, view.outbox_pending.url) == view.outbox_pending.value
    assert listed(client, view.heartbeats[0]["url"]) == 2


def test_the_admin_index_shows_the_overview_above_the_apps(known_rows):
    client = Client()
    client.force_login(User.objects.create_superuser(f"ops-{uuid.uuid4().hex[:6]}", password="x" * 12))

    page = client.get("/admin/").content.decode()

    assert page.index('id="operations-overview"') < page.index('class="app-saga')
    assert 'id="chart-flow"' in page and "chart.umd.min.js" in page
    assert Client().get("/admin/").status_code == 302  # and for staff only


def test_staff_who_may_not_see_the_sagas_get_the_plain_index(known_rows):
    clerk = User.objects.create_user(f"clerk-{uuid.uuid4().hex[:6]}", password="x" * 12, is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    client = Client()
    client.force_login(clerk)

    page = client.get("/admin/")

    assert page.status_code == 200 and 'class="app-orders' in page.content.decode()
    assert 'id="operations-overview"' not in page.content.decode()
