"""Replay jobs over thousands of dead letters: a group replay completes, keeps to its rate, stops halfway and
resumes, and sends each letter at most once, even with two runs of one job at the same time."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from config.access.models import AuditEntry
from messaging import replays
from messaging.fingerprints import error_fingerprint
from messaging.models import DeadLetter, OutboxMessage, ReplayJob
from messaging.replays import (
    abandoned_after_s,
    job_letters,
    replay_job_pause,
    replay_job_resume,
    replay_job_run,
    replay_job_start,
    replay_jobs_revive,
)
from tests.processes import ROOT, process_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)  # each batch is a durable transaction

LETTERS = 5_000
TRACEBACK = "Traceback (most recent call last):\nmessaging.errors.RetriesExhaustedError: lock timeout\n"


def many_letters(count: int, *, queue: str = "payments", reason: str = "retries_exhausted") -> list[DeadLetter]:
    at = timezone.now()
    detail = "canceling statement due to lock timeout"
    letters = [
        DeadLetter(
            message_id=str(uuid.uuid4()),
            routing_key="payment.process",
            queue=queue,
            body=json.dumps({"order_id": str(uuid.uuid4()), "customer_id": "c", "amount": "1.00", "currency": "EUR"}),
            reason=reason,
            detail=detail,
            traceback=TRACEBACK,
            fingerprint=error_fingerprint(reason, TRACEBACK, detail),
            first_failed_at=at,
            last_failed_at=at,
        )
        for _ in range(count)
    ]
    return DeadLetter.objects.bulk_create(letters, batch_size=1000)


def sends_per_message() -> Counter:
    return Counter(OutboxMessage.objects.values_list("message_id", flat=True))


def test_a_group_replay_of_5000_letters_completes_at_its_rate_and_sends_each_once():
    stored = many_letters(LETTERS)
    many_letters(50, reason="invalid_payload")  # another group, left alone
    rate = 500.0
    job = replay_job_start(
        by="ops", fingerprint=stored[0].fingerprint, queue="payments", batch_size=250, rate_per_s=rate, dispatch=False
    )
    assert job.total == LETTERS

    began = time.monotonic()
    job = replay_job_run(job.pk)
    elapsed = time.monotonic() - began

    assert (job.state, job.done, job.refused, job.failed) == ("done", LETTERS, 0, 0)
    # the rate holds: 5,000 letters at 500/s take at least 10 s (without the limit, about 4 s on a busy 2-core box)
    assert elapsed >= LETTERS / rate * 0.95, elapsed
    sends = sends_per_message()
    assert len(sends) == LETTERS and set(sends.values()) == {1}
    assert {uuid.UUID(row.message_id) for row in stored} == set(sends)
    assert DeadLetter.objects.filter(reason="retries_exhausted", replayed_at__isnull=True).count() == 0
    assert DeadLetter.objects.filter(reason="invalid_payload", replayed_at__isnull=True).count() == 50
    assert AuditEntry.objects.filter(action="dead_letter.replay_job.start", target=f"replay_job:{job.pk}").exists()


def test_without_a_tight_rate_the_same_replay_runs_faster_than_the_limited_one():
    """What makes the bound above mean something: the runner itself is faster than the rate it is held to."""
    many_letters(2_000)
    job = replay_job_start(by="ops", batch_size=250, rate_per_s=1_000_000.0, dispatch=False)

    began = time.monotonic()
    job = replay_job_run(job.pk)
    elapsed = time.monotonic() - began

    assert job.done == 2_000
    assert elapsed < 2_000 / 500.0, f"{2_000 / elapsed:.0f} letters/s unlimited"  # faster than the rate above


def test_a_job_paused_halfway_resumes_where_it_stopped_and_replays_each_letter_once():
    many_letters(LETTERS)
    job = replay_job_start(by="ops", batch_size=200, rate_per_s=2_000.0, dispatch=False)
    run = threading.Thread(target=_run_closing, args=(job.pk,))
    run.start()
    wait_for(lambda: ReplayJob.objects.get(pk=job.pk).done >= 1_500, timeout=60, message="the job to be under way")
    assert replay_job_pause(job, by="ops")
    run.join(timeout=60)

    paused = ReplayJob.objects.get(pk=job.pk)
    replayed = DeadLetter.objects.filter(replayed_at__isnull=False).count()
    assert paused.state == "paused" and 1_500 <= paused.done < LETTERS
    assert replayed == paused.done == OutboxMessage.objects.count()  # marked with the row it wrote, no more

    assert replay_job_resume(paused, by="ops", dispatch=False)
    done = replay_job_run(job.pk)

    assert (done.state, done.done) == ("done", LETTERS)
    sends = sends_per_message()
    assert len(sends) == LETTERS and set(sends.values()) == {1}
    actions = set(AuditEntry.objects.filter(target=f"replay_job:{job.pk}").values_list("action", flat=True))
    assert actions == {"dead_letter.replay_job.start", "dead_letter.replay_job.pause", "dead_letter.replay_job.resume"}


def test_two_runs_of_one_job_at_once_still_send_each_letter_once():
    """As when a worker is thought dead and the job resumed on another while the first still runs."""
    many_letters(2_000)
    job = replay_job_start(by="ops", batch_size=100, rate_per_s=100_000.0, dispatch=False)
    runs = [threading.Thread(target=_run_closing, args=(job.pk,)) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)

    sends = sends_per_message()
    assert len(sends) == 2_000 and set(sends.values()) == {1}
    assert ReplayJob.objects.get(pk=job.pk).done == 2_000


class _WorkerDied(Exception):
    pass


def _die_after_first_batch(job: ReplayJob) -> None:
    raise _WorkerDied


def _age(job: ReplayJob, seconds: float) -> None:
    ReplayJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_a_job_left_running_by_a_dead_worker_is_handed_on_and_sends_each_letter_once(monkeypatch):
    many_letters(500)
    job = replay_job_start(by="ops", batch_size=100, rate_per_s=100_000.0, dispatch=False)
    # given a job whose worker died after its first batch: it is left running, with nothing behind it
    with pytest.raises(_WorkerDied):
        replay_job_run(job.pk, on_batch=_die_after_first_batch)
    job.refresh_from_db()
    assert (job.state, job.done) == (ReplayJob.RUNNING, 100)
    handed = []
    monkeypatch.setattr(replays, "replay_job_dispatch", lambda job: handed.append(job.pk))

    # while it may still be only slow, the sweep leaves it
    _age(job, abandoned_after_s(job) - 5)
    assert replay_jobs_revive() == 0

    # once it has finished no batch for longer, the sweep hands it on, once
    _age(job, abandoned_after_s(job) + 1)
    assert replay_jobs_revive() == 1
    assert handed == [job.pk]
    assert replay_jobs_revive() == 0  # its clock started again

    # and run on, it finishes where the dead one stopped: each letter sent once
    assert replay_job_run(job.pk).state == ReplayJob.DONE
    job.refresh_from_db()
    assert (job.done, job.failed, job.refused) == (500, 0, 0)
    assert set(sends_per_message().values()) == {1} and len(sends_per_message()) == 500
    assert AuditEntry.objects.filter(action="dead_letter.replay_job.revive", target=f"replay_job:{job.pk}").count() == 1


def test_the_revival_leaves_paused_stopped_and_finished_jobs_alone(monkeypatch):
    many_letters(10)
    monkeypatch.setattr(replays, "replay_job_dispatch", lambda job: pytest.fail(f"job {job.pk} handed on"))
    paused = replay_job_start(by="ops", dispatch=False)
    replay_job_pause(paused, by="ops")
    done = replay_job_start(by="ops", dispatch=False)
    replay_job_run(done.pk)
    for job in (paused, done):
        _age(job, abandoned_after_s(job) + 3600)

    assert replay_jobs_revive() == 0


def test_a_stopped_job_does_not_go_on_and_a_limit_is_kept():
    many_letters(300)
    job = replay_job_start(by="ops", limit=120, batch_size=50, rate_per_s=100_000.0, dispatch=False)
    assert job.total == 120

    job = replay_job_run(job.pk)

    assert (job.state, job.done) == ("done", 120) and OutboxMessage.objects.count() == 120
    assert job_letters(job).count() == 180


def test_a_discard_job_discards_the_group_and_sends_nothing():
    many_letters(500)
    job = replay_job_start(by="ops", action="discard", batch_size=200, rate_per_s=100_000.0, dispatch=False)

    job = replay_job_run(job.pk)

    assert (job.state, job.done) == ("done", 500)
    assert not OutboxMessage.objects.exists()
    assert DeadLetter.objects.filter(discarded_at__isnull=False, discarded_by="ops").count() == 500


def _run_closing(job_id: int) -> None:
    try:
        replay_job_run(job_id)
    finally:
        connection.close()


def test_a_job_takes_the_letters_stored_before_it_started_not_its_own_replays_failing_again():
    """Else a job over a handler that keeps failing would replay the new letters of its own replays forever."""
    many_letters(40)
    job = replay_job_start(by="ops", batch_size=10, rate_per_s=100_000.0, dispatch=False)
    many_letters(15)  # stored after it started: as its replays would be, dead-lettered again

    job = replay_job_run(job.pk)

    assert (job.total, job.done) == (40, 40)
    assert DeadLetter.objects.filter(replayed_at__isnull=True).count() == 15


EMBEDDED_RUN = """
import json, time, uuid
import django
django.setup()
from django.utils import timezone
from messaging.models import DeadLetter, OutboxMessage
from messaging.replays import replay_job_start
at = timezone.now()
body = json.dumps({"order_id": str(uuid.uuid4())})
DeadLetter.objects.bulk_create([
    DeadLetter(message_id=str(uuid.uuid4()), routing_key="payment.process", queue="payments", body=body,
               reason="retries_exhausted", first_failed_at=at, last_failed_at=at)
    for _ in range(200)
])
job = replay_job_start(by="ops", batch_size=50, rate_per_s=1000)
deadline = time.monotonic() + 60
while job.state != "done" and time.monotonic() < deadline:
    time.sleep(0.1)
    job.refresh_from_db()
print(job.state, job.done, len(set(OutboxMessage.objects.values_list("message_id", flat=True))))
"""


@pytest.mark.django_db(transaction=False)
def test_in_the_embedded_mode_a_thread_of_the_web_process_runs_the_job(tmp_path):
    """The embedded default (SQLite, no broker): replay_job_start hands the job to a thread, not to Celery."""
    env = {key: value for key, value in process_env().items() if key not in ("DATABASE_URL", "BROKER_URL")}
    env.update(SQLITE_PATH=str(tmp_path / "embedded.sqlite3"), LOG_LEVEL="error", PYTHONPATH=str(ROOT))
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, timeout=300)
    assert migrate.returncode == 0

    run = subprocess.run(
        [sys.executable, "-c", EMBEDDED_RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert run.stdout.split() == ["done", "200", "200"], run.stdout + run.stderr
