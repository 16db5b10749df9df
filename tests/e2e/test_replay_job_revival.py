"""A replay job whose worker is killed mid-job: beat's revival sweep hands it to another worker, which finishes it
where the dead one stopped, each letter sent once."""

from __future__ import annotations

from collections import Counter

import pytest

from messaging.models import OutboxMessage, ReplayJob
from tests.integration.test_replay_jobs import many_letters
from tests.processes import background_replay, celery_beat, celery_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fault]
LETTERS = 400


def test_a_replay_job_whose_worker_is_killed_is_handed_on_and_sends_each_letter_once(started):
    many_letters(LETTERS)
    first = started(celery_worker("worker-a"))
    # given a job of 400 letters, 20 a batch at 40 a second: ten seconds of work
    background_replay("--all", "--batch-size", "20", "--rate", "40")
    job = wait_for(lambda: ReplayJob.objects.filter(done__gte=60).first(), timeout=30, message="the job to be going")

    # when its worker is killed mid-job, the job is left running with nobody behind it
    first.kill()
    job.refresh_from_db()
    halfway = job.done
    assert job.state == ReplayJob.RUNNING and halfway < LETTERS

    # then another worker, with beat's revival sweep, takes it on after the stall allowed, and finishes it
    second = started(celery_worker("worker-b", REPLAY_JOB_STALL_S="2"))
    started(celery_beat(REPLAY_JOB_STALL_S="2"), queues=())
    done = wait_for(
        lambda: ReplayJob.objects.filter(pk=job.pk, state=ReplayJob.DONE).first(),
        timeout=60,
        message="the job to be revived and finished",
    )
    assert (done.done, done.failed, done.refused) == (LETTERS, 0, 0)
    sends = Counter(OutboxMessage.objects.filter(target_queue="payments").values_list("message_id", flat=True))
    assert len(sends) == LETTERS and set(sends.values()) == {1}, "a letter was lost or sent twice"
    assert "handed to a worker again" in second.log()
