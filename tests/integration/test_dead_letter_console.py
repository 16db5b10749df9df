"""The dead-letter console: letters grouped by their failure, a whole group replayed or discarded in the
background, a letter's Replay, Discard and Correct-and-replay, and one history for a message that fails again."""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from config.access.models import AuditEntry
from messaging.consumers import handle_delivery, store_dead_letter
from messaging.deadletters import FailedDelivery, dead_letter_record, dead_letter_replay
from messaging.inprocess import drain as deliver_the_outbox
from messaging.models import DeadLetter, DeadLetterGroup, OutboxMessage, ReplayJob
from messaging.replays import replay_job_run
from tests.integration.test_admin import staff  # noqa: F401 - a fixture: a client logged in as a superuser

pytestmark = [pytest.mark.django_db(transaction=True)]


def failed(detail: str, error: BaseException, *, reason: str = "retries_exhausted") -> DeadLetter:
    body = json.dumps({"order_id": str(uuid.uuid4()), "customer_id": "c", "amount": "1.00", "currency": "EUR"})
    return dead_letter_record(
        FailedDelivery(
            message_id=str(uuid.uuid4()),
            routing_key="payment.process",
            queue="payments",
            body=body,
            headers={},
            reason=reason,
            detail=detail,
            attempts=3,
            error=error,
        )
    )


@pytest.fixture
def outage() -> list[DeadLetter]:
    """Twelve letters of one lock outage (each naming its own row and wait), and three of another failure."""
    lock = [
        failed(f"canceling statement due to lock timeout on {uuid.uuid4()} after {n * 7} ms", TimeoutError("lock"))
        for n in range(12)
    ]
    other = [failed(f"account {uuid.uuid4()} is closed", ValueError("closed")) for _ in range(3)]
    return lock + other


@pytest.fixture
def viewer() -> Client:
    """Staff who may look at the dead letters, not act on them."""
    user = User.objects.create_user(f"viewer-{uuid.uuid4().hex[:6]}", password="x" * 12, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    client = Client()
    client.force_login(user)
    return client


def test_letters_of_one_failure_share_a_fingerprint_whatever_ids_and_numbers_their_detail_names(outage):
    fingerprints = [letter.fingerprint for letter in outage]

    assert len(set(fingerprints[:12])) == 1 and len(set(fingerprints[12:])) == 1
    assert fingerprints[0] != fingerprints[12] and len(fingerprints[0]) == 12
    groups = {(group.reason, group.fingerprint): group.letters for group in DeadLetterGroup.objects.all()}
    assert groups == {("retries_exhausted", fingerprints[0]): 12, ("retries_exhausted", fingerprints[12]): 3}


def test_the_groups_page_lists_counts_and_links_to_the_letters_behind_each(staff, outage):  # noqa: F811
    response = staff.get("/admin/messaging/deadlettergroup/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f"fingerprint={outage[0].fingerprint}" in page and ">12</a>" in page and ">3</a>" in page
    letters = staff.get(f"/admin/messaging/deadletter/?fingerprint={outage[0].fingerprint}")
    assert letters.status_code == 200 and "12 dead letters" in letters.content.decode()


def test_a_group_replay_from_the_admin_runs_in_the_background_not_in_the_request(staff, outage, inprocess):  # noqa: F811
    group = DeadLetterGroup.objects.get(fingerprint=outage[0].fingerprint)

    response = staff.post(
        "/admin/messaging/deadlettergroup/", {"action": "replay_groups", "_selected_action": [group.pk]}, follow=True
    )

    assert response.status_code == 200
    job = ReplayJob.objects.get()
    assert (job.state, job.total, job.fingerprint) == ("running", 12, outage[0].fingerprint)
    assert not OutboxMessage.objects.exists()  # nothing replayed by the request itself
    assert AuditEntry.objects.filter(action="dead_letter.replay_job.start", actor__startswith="ops-").exists()
    assert "12/12" not in staff.get("/admin/messaging/replayjob/").content.decode()

    replay_job_run(job.pk)  # what the worker's task (or the embedded mode's thread) does

    assert OutboxMessage.objects.count() == 12
    assert "12/12 (100%): 12 replayed" in staff.get("/admin/messaging/replayjob/").content.decode()
    assert DeadLetterGroup.objects.count() == 1  # only the other failure waits now


def test_a_group_discard_from_the_admin_discards_only_that_group(staff, outage, inprocess):  # noqa: F811
    group = DeadLetterGroup.objects.get(fingerprint=outage[12].fingerprint)

    staff.post("/admin/messaging/deadlettergroup/", {"action": "discard_groups", "_selected_action": [group.pk]})
    replay_job_run(ReplayJob.objects.get().pk)

    assert DeadLetter.objects.filter(discarded_at__isnull=False).count() == 3
    assert not OutboxMessage.objects.exists()


def test_those_who_may_only_look_get_no_group_actions(viewer, outage, inprocess):
    group = DeadLetterGroup.objects.first()
    response = viewer.post(
        "/admin/messaging/deadlettergroup/", {"action": "replay_groups", "_selected_action": [group.pk]}
    )
    assert response.status_code in (200, 302, 403)
    assert not ReplayJob.objects.exists()


def test_a_letters_page_replays_and_discards_it_by_post_with_permission(staff, outage, inprocess):  # noqa: F811
    letter, other = outage[0], outage[1]
    page = staff.get(f"/admin/messaging/deadletter/{letter.pk}/change/").content.decode()
    assert f"/admin/messaging/deadletter/{letter.pk}/replay/" in page and "csrfmiddlewaretoken" in page
    assert f"/admin/messaging/deadletter/{letter.pk}/discard/" in page

    assert staff.get(f"/admin/messaging/deadletter/{letter.pk}/replay/").status_code == 405  # a GET changes nothing
    assert staff.post(f"/admin/messaging/deadletter/{letter.pk}/replay/").status_code == 302
    assert staff.post(f"/admin/messaging/deadletter/{other.pk}/discard/").status_code == 302

    assert [str(row.message_id) for row in OutboxMessage.objects.all()] == [letter.message_id]
    assert DeadLetter.objects.get(pk=other.pk).discarded_at is not None
    actions = set(AuditEntry.objects.values_list("action", "target"))
    assert {
        ("dead_letter.replay", f"dead_letter:{letter.pk}"),
        ("dead_letter.discard", f"dead_letter:{other.pk}"),
    } <= actions


def test_the_csrf_token_is_required(outage, inprocess):
    user = User.objects.create_superuser(f"ops-{uuid.uuid4().hex[:6]}", password="x" * 12)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post(f"/admin/messaging/deadletter/{outage[0].pk}/replay/").status_code == 403
    assert not OutboxMessage.objects.exists()


def test_without_permission_a_letters_page_has_no_buttons_and_a_post_is_refused(viewer, outage, inprocess):
    letter = outage[0]
    page = viewer.get(f"/admin/messaging/deadletter/{letter.pk}/change/")
    assert page.status_code == 200 and f"{letter.pk}/replay/" not in page.content.decode()

    for url in (f"{letter.pk}/replay/", f"{letter.pk}/discard/", f"{letter.pk}/edit/"):
        assert viewer.post(f"/admin/messaging/deadletter/{url}", {"payload": "{}"}).status_code == 403

    assert not OutboxMessage.objects.exists() and DeadLetter.objects.get(pk=letter.pk).discarded_at is None


def test_correct_and_replay_keeps_the_original_and_the_message_id_and_is_audited(staff, inprocess):  # noqa: F811
    letter = failed("amount: not a decimal", ValueError("amount"), reason="invalid_payload")
    original_body = letter.body
    url = f"/admin/messaging/deadletter/{letter.pk}/edit/"
    assert "Replay with this payload" in staff.get(url).content.decode()

    refused = staff.post(url, {"payload": "[1, 2"})
    assert refused.status_code == 400 and "not JSON" in refused.content.decode()
    assert staff.post(url, {"payload": "[1, 2]"}).status_code == 400  # JSON, but not an object
    assert not OutboxMessage.objects.exists()

    corrected = {**json.loads(original_body), "amount": "2.50"}
    assert staff.post(url, {"payload": json.dumps(corrected)}).status_code == 302

    row = OutboxMessage.objects.get()
    assert (str(row.message_id), row.payload, row.target_queue) == (letter.message_id, corrected, "payments")
    letter.refresh_from_db()
    assert letter.body == original_body and json.loads(letter.edited_body) == corrected
    assert letter.edited_by.startswith("ops-") and letter.replayed_at is not None
    entry = AuditEntry.objects.get(action="dead_letter.edit_and_replay")
    assert entry.target == f"dead_letter:{letter.pk}"
    assert json.loads(entry.details["before"]) == json.loads(original_body)
    assert json.loads(entry.details["after"]) == corrected


def test_a_message_that_fails_again_after_a_replay_is_linked_to_its_earlier_letter_with_attempts_carried(inprocess):
    body = json.dumps({"order_id": str(uuid.uuid4())}).encode()  # payment.process without its other fields
    message_id = str(uuid.uuid4())
    store_dead_letter(
        handle_delivery("payments", body, {"message_id": message_id, "type": "payment.process"}, {}, "payment.process")
    )
    first = DeadLetter.objects.get()

    dead_letter_replay(letter=first, by="ops")
    deliver_the_outbox()  # delivered to payments again, and dead-lettered again

    again = DeadLetter.objects.exclude(pk=first.pk).get()
    assert (again.message_id, again.previous_id, again.reason) == (message_id, first.pk, first.reason)
    assert again.attempts == first.attempts + 1
    assert again.fingerprint == first.fingerprint


def test_a_header_that_names_an_unrelated_letter_links_nothing(inprocess):
    unrelated = failed("x", ValueError("x"))
    dead_letter_replay(letter=unrelated, by="ops")
    body = json.dumps({"order_id": str(uuid.uuid4())}).encode()
    headers = {"x-sagaflow-replay-of": unrelated.pk}

    store_dead_letter(
        handle_delivery("payments", body, {"message_id": str(uuid.uuid4()), "type": "payment.process"}, headers, "x")
    )

    assert DeadLetter.objects.exclude(pk=unrelated.pk).get().previous is None


def test_a_job_is_paused_resumed_and_stopped_from_the_admin_and_its_page_shows_its_progress(staff, outage, inprocess):  # noqa: F811
    group = DeadLetterGroup.objects.get(fingerprint=outage[0].fingerprint)
    staff.post("/admin/messaging/deadlettergroup/", {"action": "replay_groups", "_selected_action": [group.pk]})
    job = ReplayJob.objects.get()

    for action, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        staff.post("/admin/messaging/replayjob/", {"action": action, "_selected_action": [job.pk]})
        assert ReplayJob.objects.get(pk=job.pk).state == state

    page = staff.get(f"/admin/messaging/replayjob/{job.pk}/change/")
    assert page.status_code == 200 and "0/12 (0%)" in page.content.decode()
    assert replay_job_run(job.pk).done == 0  # a stopped job sends nothing


def test_a_letters_page_shows_its_history(staff, inprocess):  # noqa: F811
    body = json.dumps({"order_id": str(uuid.uuid4())}).encode()
    properties = {"message_id": str(uuid.uuid4()), "type": "payment.process"}
    store_dead_letter(handle_delivery("payments", body, properties, {}, "payment.process"))
    first = DeadLetter.objects.get()
    dead_letter_replay(letter=first, by="ops")
    deliver_the_outbox()
    again = DeadLetter.objects.exclude(pk=first.pk).get()

    page = staff.get(f"/admin/messaging/deadletter/{again.pk}/change/").content.decode()

    assert f'href="/admin/messaging/deadletter/{first.pk}/change/">earlier #{first.pk}</a> (1 attempts)' in page
    later = staff.get(f"/admin/messaging/deadletter/{first.pk}/change/").content.decode()
    assert f">later #{again.pk}</a> (2 attempts)" in later


def test_a_large_selection_of_letters_is_replayed_by_a_background_job(staff, inprocess):  # noqa: F811
    from messaging.admin import INLINE_REPLAY_LIMIT
    from tests.integration.test_replay_jobs import many_letters

    letters = many_letters(INLINE_REPLAY_LIMIT + 5)

    staff.post(
        "/admin/messaging/deadletter/", {"action": "replay", "_selected_action": [letter.pk for letter in letters]}
    )

    job = ReplayJob.objects.get()
    assert job.total == len(letters) and not OutboxMessage.objects.exists()
    assert replay_job_run(job.pk).done == len(letters)
