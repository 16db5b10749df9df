"""A replay goes on past the dead letters it cannot replay, from the command and from the admin, and says
which they were and why: refused (a reason the operator can read) or failed (whatever it raised)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.utils import timezone

from messaging.consumers import handle_delivery, store_dead_letter
from messaging.models import DeadLetter, OutboxMessage
from tests.integration.test_admin import staff  # noqa: F401 - a fixture: a client logged in as staff
from tests.processes import ROOT, process_env

pytestmark = pytest.mark.django_db(transaction=True)  # a replay opens a durable transaction


def letter(age_s: int, **fields) -> DeadLetter:
    """A dead letter of payment.process that failed `age_s` seconds ago (the command replays oldest first)."""
    at = timezone.now() - timedelta(seconds=age_s)
    body = json.dumps({"order_id": str(uuid.uuid4()), "customer_id": "c", "amount": "1.00", "currency": "EUR"})
    values = {
        "message_id": str(uuid.uuid4()),
        "routing_key": "payment.process",
        "queue": "payments",
        "body": body,
        "reason": "retries_exhausted",
        "first_failed_at": at,
        "last_failed_at": at,
        **fields,
    }
    return DeadLetter.objects.create(**values)


def without_an_id() -> DeadLetter:
    """How a message that came without a message_id is stored now: under an id derived from it."""
    body = json.dumps({"order_id": "not-a-uuid"}).encode()
    verdict = handle_delivery(
        "saga", body, {"type": "payment.processed"}, {"marker": uuid.uuid4().hex}, "payment.processed"
    )
    store_dead_letter(verdict)
    return DeadLetter.objects.get()


@pytest.fixture
def outbox_refuses():
    """Makes the outbox refuse the insert of one message id: a replay that raises, as a database can."""
    refused: list[str] = []

    def refuse(message_id: str) -> None:
        refused.append(message_id)
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE messaging_outboxmessage ADD CONSTRAINT the_outbox_refuses_this_one "
                f"CHECK (message_id <> '{uuid.UUID(message_id)}')"
            )

    yield refuse
    if refused:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE messaging_outboxmessage DROP CONSTRAINT the_outbox_refuses_this_one")


@pytest.fixture
def hopeless(outbox_refuses) -> dict[str, DeadLetter]:
    """Letters that cannot be replayed, each older than the one good letter, so each comes before it."""
    letters = {
        "merged-without-id": letter(60, message_id="(none)"),  # how every id-less message used to be stored
        "brackets": letter(50, body="[" * 100_000, reason="undecodable_body"),
        "unknown-queue": letter(40, queue="sagaflow.dead-letters"),
        "raises": letter(30),
        "good": letter(10),
    }
    outbox_refuses(letters["raises"].message_id)
    return letters


def replay_command(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "replay_dead_letters", "--by", "ops", *args],
        cwd=ROOT,
        env=process_env(LOG_LEVEL="error"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_command_replays_what_it_can_reports_each_letter_it_cannot_and_exits_non_zero(hopeless):
    result = replay_command()

    lines = result.stdout.splitlines()
    assert result.returncode != 0, result.stdout + result.stderr
    assert lines[-1] == "1 replayed, 3 refused, 1 failed", result.stdout
    by_letter = {
        name: [line for line in lines if re.match(rf"\w+ (#|dead letter ){row.pk} ", line)]
        for name, row in hopeless.items()
    }
    assert by_letter["merged-without-id"][0].startswith("refused") and "not a UUID" in by_letter["merged-without-id"][0]
    assert by_letter["brackets"][0].startswith("refused") and "not a JSON object" in by_letter["brackets"][0]
    assert by_letter["unknown-queue"][0].startswith("refused") and "not the queue of a consumer" in result.stdout
    assert by_letter["raises"][0].startswith("failed") and "the_outbox_refuses_this_one" in by_letter["raises"][0]
    assert by_letter["good"][0].startswith("replayed")
    assert "could not be replayed" in result.stderr
    # only the good one went out, and only it is marked replayed
    assert list(OutboxMessage.objects.values_list("message_id", flat=True)) == [uuid.UUID(hopeless["good"].message_id)]
    assert [row.pk for row in DeadLetter.objects.filter(replayed_at__isnull=False)] == [hopeless["good"].pk]


def test_a_dry_run_says_what_would_happen_to_each_letter_and_changes_nothing(hopeless):
    result = replay_command("--dry-run")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("would #") == len(hopeless)
    assert not OutboxMessage.objects.exists()


def test_a_letter_stored_without_an_id_is_replayed_under_the_id_it_was_stored_with():
    stored = without_an_id()

    result = replay_command("--id", str(stored.pk))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "its message had no id: it is replayed under the one it was stored with" in result.stdout
    row = OutboxMessage.objects.get()
    assert (str(row.message_id), row.target_queue) == (stored.message_id, "saga")


def test_the_admin_replays_what_it_can_and_names_the_letters_it_could_not(staff, hopeless):  # noqa: F811
    response = staff.post(
        "/admin/messaging/deadletter/",
        {"action": "replay", "_selected_action": [row.pk for row in hopeless.values()]},
        follow=True,
    )

    assert response.status_code == 200
    said = [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]
    errors = [text for level, text in said if level == "error"]
    warnings = [text for level, text in said if level == "warning"]
    assert len(errors) == 1 and f"{hopeless['raises'].pk}" in errors[0] and "the_outbox_refuses_this_one" in errors[0]
    assert sorted(int(text.split()[2]) for text in warnings) == sorted(
        hopeless[name].pk for name in ("merged-without-id", "brackets", "unknown-queue")
    )
    assert tuple(DeadLetter.objects.filter(replayed_at__isnull=False).values_list("pk", flat=True)) == (
        hopeless["good"].pk,
    )


def test_letters_an_earlier_version_stored_as_none_get_an_id_each_and_are_replayed_under_it(latest_schema_after):
    from django.db.migrations.executor import MigrationExecutor

    before, after = ("messaging", "0005_outbox_notify_names_the_row"), ("messaging", "0006_dead_letters_without_an_id")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    then = MigrationExecutor(connection).loader.project_state([before]).apps.get_model("messaging", "DeadLetter")
    at = timezone.now()
    legacy = [
        then.objects.create(
            message_id="(none)",
            queue="saga",
            routing_key="payment.failed",
            body=json.dumps({"order_id": "not-a-uuid", "n": n}),
            reason="retries_exhausted",
            first_failed_at=at,
            last_failed_at=at,
        )
        for n in range(2)
    ]

    MigrationExecutor(connection).migrate([after])
    latest_schema_after()

    migrated = [DeadLetter.objects.get(pk=row.pk) for row in legacy]
    assert len({row.message_id for row in migrated}) == 2 and all(uuid.UUID(row.message_id) for row in migrated)
    assert all(row.headers["x-sagaflow-original"] == {"message_id": None} for row in migrated)
    assert all(row.fingerprint for row in migrated)  # backfilled by the migration after
    result = replay_command("--id", str(migrated[0].pk))
    assert result.returncode == 0 and "replayed under the one it was stored with" in result.stdout, result.stdout
