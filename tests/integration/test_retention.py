"""Published outbox rows, inbox rows and webhook attempts are forgotten after their retention; an unpublished
outbox row never is."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messaging import retention
from messaging.models import InboxMessage, OutboxMessage
from messaging.outbox import publish
from orders import webhooks
from orders.models import WebhookAttempt, WebhookEndpoint

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now()


def outbox_row(*, days_ago: float, published_days_ago: float | None) -> int:
    with transaction.atomic():
        pk = publish("order.completed", {"order_id": str(uuid.uuid4())}).pk
    published = None if published_days_ago is None else NOW - timedelta(days=published_days_ago)
    OutboxMessage.objects.filter(pk=pk).update(created_at=NOW - timedelta(days=days_ago), published_at=published)
    return pk


def inbox_row(*, days_ago: float) -> int:
    row = InboxMessage.objects.create(consumer="saga", message_id=str(uuid.uuid4()), routing_key="payment.processed")
    InboxMessage.objects.filter(pk=row.pk).update(processed_at=NOW - timedelta(days=days_ago))
    return row.pk


def remaining(model) -> set[int]:
    return set(model.objects.values_list("pk", flat=True))


def test_outbox_rows_published_before_the_retention_go_and_unpublished_ones_stay_however_old(settings, monkeypatch):
    settings.OUTBOX_RETENTION_DAYS = 7
    monkeypatch.setattr(retention, "PRUNE_BATCH_SIZE", 2)  # several batches
    expired = [outbox_row(days_ago=10, published_days_ago=10) for _ in range(3)]
    never_published = outbox_row(days_ago=30, published_days_ago=None)
    expired.append(outbox_row(days_ago=9, published_days_ago=8))
    published_late = outbox_row(days_ago=8, published_days_ago=6)
    recent = [outbox_row(days_ago=1, published_days_ago=1), outbox_row(days_ago=0, published_days_ago=None)]

    assert retention.prune_outbox(now=NOW) == len(expired)

    assert remaining(OutboxMessage) == {never_published, published_late, *recent}
    assert retention.prune_outbox(now=NOW) == 0


def test_outbox_pruning_stops_at_the_first_rows_written_within_the_retention(settings, monkeypatch):
    settings.OUTBOX_RETENTION_DAYS = 7
    monkeypatch.setattr(retention, "PRUNE_BATCH_SIZE", 2)
    old = outbox_row(days_ago=8, published_days_ago=8)
    young = [outbox_row(days_ago=1, published_days_ago=1) for _ in range(4)]
    # After them in key order (rows are, within the milliseconds between stamping and inserting): left for a
    # later run, which shows the walk stopped at the first batch of rows written within the retention.
    beyond = outbox_row(days_ago=9, published_days_ago=9)

    assert retention.prune_outbox(now=NOW) == 1

    assert remaining(OutboxMessage) == {*young, beyond}
    assert old not in remaining(OutboxMessage)


def test_inbox_rows_older_than_the_retention_go_in_batches(settings, monkeypatch):
    settings.INBOX_RETENTION_DAYS = 7
    monkeypatch.setattr(retention, "PRUNE_BATCH_SIZE", 2)
    old = [inbox_row(days_ago=8) for _ in range(5)]
    young = [inbox_row(days_ago=6), inbox_row(days_ago=0)]

    assert retention.prune_inbox(now=NOW) == len(old)

    assert remaining(InboxMessage) == set(young)


def webhook_attempt(endpoint: WebhookEndpoint, *, days_ago: float) -> int:
    return WebhookAttempt.objects.create(
        endpoint=endpoint,
        event_id=uuid.uuid4(),
        event_type="order.completed",
        order_id=uuid.uuid4(),
        attempt=1,
        status_code=204,
        succeeded=True,
        duration_ms=3.0,
        attempted_at=NOW - timedelta(days=days_ago),
    ).pk


def test_webhook_attempts_older_than_their_retention_go_in_batches(settings, monkeypatch):
    settings.WEBHOOK_ATTEMPT_RETENTION_DAYS = 30
    monkeypatch.setattr(retention, "PRUNE_BATCH_SIZE", 2)
    endpoint = WebhookEndpoint.objects.create(
        url="https://receiver.example/hooks", secret="s", events=["order.completed"]
    )
    old = [webhook_attempt(endpoint, days_ago=31) for _ in range(3)]
    young = [webhook_attempt(endpoint, days_ago=29), webhook_attempt(endpoint, days_ago=0)]

    assert webhooks.prune_attempts(now=NOW) == len(old)

    assert remaining(WebhookAttempt) == set(young)
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_beat_prunes_both_every_hour_as_celery_loads_its_schedule_before_django_is_ready():
    # In a fresh interpreter, as `celery -A config beat` starts: the schedule is built before Django's apps
    # are ready, and an import of models there would leave beat with no schedule at all.
    program = (
        "import json; from config.celery import app; app.finalize(); "
        "print(json.dumps({e['task']: e['schedule'] for e in app.conf.beat_schedule.values()}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=settings.BASE_DIR,
        env={**os.environ, "SECRET_KEY": secrets.token_urlsafe(50)},
    )
    schedule = json.loads(loaded.stdout.strip().splitlines()[-1])

    assert schedule["messaging.tasks.prune_outbox"] == schedule["messaging.tasks.prune_inbox"] == 3600.0
    assert schedule["orders.tasks.prune_webhook_attempts"] == 3600.0
    assert {"saga.tasks.sweep_timeouts", "messaging.tasks.sweep_outbox"} <= set(schedule)
