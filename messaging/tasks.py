"""Periodic tasks run by Celery beat."""

from __future__ import annotations

import logging

from celery import shared_task

from messaging import retention
from messaging.broker import connected
from messaging.relay import ConfirmingPublisher, RefusedRows, relay_once

logger = logging.getLogger(__name__)


@shared_task(name="messaging.tasks.sweep_outbox", ignore_result=True)
def sweep_outbox() -> int:
    """Publish anything the relays left behind (a relay that died mid-batch, a lost NOTIFY)."""
    total = 0
    refusals = RefusedRows()
    with connected() as broker:
        publisher = ConfirmingPublisher(broker)
        while count := relay_once(publisher, refusals=refusals):
            total += count - refusals.last_refused
            if refusals.last_refused:
                break  # the broker refuses: the relays try these again later, with backoff
    if total:
        logger.info("outbox sweep published %s messages", total)
    return total


@shared_task(name="messaging.tasks.prune_inbox", ignore_result=True)
def prune_inbox() -> int:
    """Forget inbox rows older than INBOX_RETENTION_DAYS."""
    return retention.prune_inbox()


@shared_task(name="messaging.tasks.prune_outbox", ignore_result=True)
def prune_outbox() -> int:
    """Forget outbox rows published more than OUTBOX_RETENTION_DAYS ago."""
    return retention.prune_outbox()


@shared_task(name="messaging.tasks.run_replay_job", ignore_result=True)
def run_replay_job(job_id: int) -> None:
    """Run a dead-letter replay job (messaging.replays) until it is done, paused or stopped."""
    from messaging.replays import replay_job_run

    replay_job_run(job_id)


@shared_task(name="messaging.tasks.revive_replay_jobs", ignore_result=True)
def revive_replay_jobs() -> int:
    """Hand again to a worker the replay jobs left running by one that died (messaging.replays)."""
    from messaging.replays import replay_jobs_revive

    return replay_jobs_revive()
