"""Replay jobs: every waiting dead letter of a selection (a group, or what the command names) replayed or
discarded in the background, in batches, at a bounded rate, never inside a web request.

A job runs as a Celery task on a worker, or in a thread of the web process in the embedded mode. Each batch is
one transaction: the letters are locked (skipping those another run holds), each replay's outbox row is written
and its letter marked replayed, and the job's counts move on, all together. So a job stopped halfway, resumed,
or run twice at once sends each letter at most once: a letter marked replayed is no longer one it selects.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from config.access.services import audit_record, audit_record_many
from messaging.correlation import new_id, printable
from messaging.deadletters import dead_letter_label, replay_in_transaction, replay_message, why_not_replayable
from messaging.models import DeadLetter, OutboxMessage, ReplayJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LetterOutcome:
    letter: DeadLetter
    outcome: str  # "replayed", "discarded", "refused" or "failed"
    why: str = ""


def replay_job_start(
    *,
    by: str,
    action: str = ReplayJob.REPLAY,
    queue: str = "",
    routing_key: str = "",
    reason: str = "",
    fingerprint: str = "",
    letter_ids: list[int] | None = None,
    since=None,
    until=None,
    force: bool = False,
    limit: int | None = None,
    batch_size: int | None = None,
    rate_per_s: float | None = None,
    dispatch: bool = True,
) -> ReplayJob:
    """Start a job over the letters the selection matches now and later. Audited. With `dispatch`, a worker
    (or the embedded mode's thread) runs it once this commits; without, the caller runs it (`replay_job_run`)."""
    if action not in (ReplayJob.REPLAY, ReplayJob.DISCARD):
        raise ValueError(f"unknown action {action!r}")
    with transaction.atomic():
        job = ReplayJob(
            action=action,
            queue=queue or "",
            routing_key=routing_key or "",
            reason=reason or "",
            fingerprint=fingerprint or "",
            letter_ids=sorted(letter_ids or []),
            since=since,
            until=until,
            force=force,
            limit=limit,
            batch_size=batch_size or settings.DEAD_LETTER_REPLAY_BATCH_SIZE,
            rate_per_s=rate_per_s or settings.DEAD_LETTER_REPLAY_RATE_PER_S,
            started_by=(by or "?")[:150],
        )
        job.up_to = DeadLetter.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        matched = job_letters(job).count()
        job.total = matched if limit is None else min(matched, limit)
        job.save()
        audit_record(
            actor=by,
            action=f"dead_letter.{action}_job.start",
            target=f"replay_job:{job.pk}",
            details={"selection": job.selection(), "letters": job.total, "rate_per_s": job.rate_per_s},
        )
        if dispatch:
            transaction.on_commit(lambda: replay_job_dispatch(job))
    logger.warning("%s job %s started by %s: %s letters (%s)", action, job.pk, by, job.total, job.selection())
    return job


def job_letters(job: ReplayJob) -> QuerySet[DeadLetter]:
    """The letters a job is for: its selection, still waiting (unless forced or named by id), stored before it
    started (so that its own replays failing again are not replayed again and again), in id order."""
    letters = DeadLetter.objects.filter(pk__lte=job.up_to) if job.pk or job.up_to else DeadLetter.objects.all()
    for field in ("queue", "routing_key", "reason", "fingerprint"):
        if getattr(job, field):
            letters = letters.filter(**{field: getattr(job, field)})
    if job.letter_ids:
        letters = letters.filter(pk__in=job.letter_ids)
    if job.since:
        letters = letters.filter(last_failed_at__gte=job.since)
    if job.until:
        letters = letters.filter(last_failed_at__lte=job.until)
    if job.action == ReplayJob.DISCARD or not (job.force or job.letter_ids):
        # Letters named by id are taken whatever their state, and refused one by one when they are not waiting.
        letters = letters.filter(replayed_at__isnull=True, discarded_at__isnull=True)
    return letters.order_by("pk")


def replay_job_dispatch(job: ReplayJob) -> None:
    """Hand a running job to whatever runs jobs here: a Celery worker, or a thread in the embedded mode."""
    if settings.MESSAGING_TRANSPORT == "inprocess":
        if settings.MESSAGING_INPROCESS_AUTOSTART:
            threading.Thread(
                target=_run_in_thread, args=(job.pk,), name=f"sagaflow-replay-{job.pk}", daemon=True
            ).start()
        return
    from messaging.tasks import run_replay_job

    run_replay_job.delay(job.pk)


def _run_in_thread(job_id: int) -> None:
    try:
        replay_job_run(job_id)
    except Exception:  # noqa: BLE001 - a thread's exception would only be printed; the job can be resumed
        logger.exception("replay job %s failed; resume it to go on", job_id)
    finally:
        connection.close()


def abandoned_after_s(job: ReplayJob) -> float:
    """How long a running job may go without finishing a batch before it is taken as abandoned: the pause its
    rate puts between two batches, and REPLAY_JOB_STALL_S on top for the batch itself."""
    return job.batch_size / job.rate_per_s + settings.REPLAY_JOB_STALL_S


def replay_jobs_revive() -> int:
    """Hand again to a worker every running job that has not finished a batch for longer than
    `abandoned_after_s`: the worker (or the web process, in the embedded mode) that ran it died, or its task
    was lost. Returns how many. A job only slow, not dead, then runs twice at once, which still sends each
    letter at most once; the second run ends as soon as the first has taken every letter."""
    revived = []
    now = timezone.now()
    with transaction.atomic():
        for job in ReplayJob.objects.filter(state=ReplayJob.RUNNING).select_for_update(skip_locked=True):
            if (now - job.updated_at).total_seconds() <= abandoned_after_s(job):
                continue
            # Its clock starts again, so that the next sweep leaves the new run its time.
            ReplayJob.objects.filter(pk=job.pk).update(updated_at=now)
            audit_record(
                actor="revival sweep", action=f"dead_letter.{job.action}_job.revive", target=f"replay_job:{job.pk}"
            )
            transaction.on_commit(functools.partial(replay_job_dispatch, job))
            revived.append(job)
    for job in revived:
        logger.warning(
            "%s job %s had finished no batch for over %.0fs (%s): handed to a worker again",
            job.action,
            job.pk,
            abandoned_after_s(job),
            job,
        )
    return len(revived)


def replay_job_pause(job: ReplayJob, *, by: str) -> bool:
    """Ask a running job to stop after its current batch; it can be resumed."""
    return _change_state(job, by=by, to=ReplayJob.PAUSED, from_states=[ReplayJob.RUNNING], verb="pause")


def replay_job_stop(job: ReplayJob, *, by: str) -> bool:
    """Stop a job for good, after its current batch."""
    states = [ReplayJob.RUNNING, ReplayJob.PAUSED]
    return _change_state(job, by=by, to=ReplayJob.STOPPED, from_states=states, verb="stop")


def replay_job_resume(job: ReplayJob, *, by: str, dispatch: bool = True) -> bool:
    """Run a paused job on from where it stopped (also one left running by a worker that died, which the
    sweep would revive after `abandoned_after_s`)."""
    states = [ReplayJob.PAUSED, ReplayJob.RUNNING]
    resumed = _change_state(job, by=by, to=ReplayJob.RUNNING, from_states=states, verb="resume")
    if resumed and dispatch:
        replay_job_dispatch(job)
    return resumed


def _change_state(job: ReplayJob, *, by: str, to: str, from_states: list[str], verb: str) -> bool:
    with transaction.atomic():
        changed = ReplayJob.objects.filter(pk=job.pk, state__in=from_states).update(
            state=to, updated_at=timezone.now(), finished_at=timezone.now() if to == ReplayJob.STOPPED else None
        )
        if changed:
            audit_record(actor=by, action=f"dead_letter.{job.action}_job.{verb}", target=f"replay_job:{job.pk}")
    if changed:
        logger.warning("%s job %s: %s by %s", job.action, job.pk, verb, by)
    return bool(changed)


def replay_job_run(
    job_id: int,
    *,
    on_letter: Callable[[LetterOutcome], None] | None = None,
    on_batch: Callable[[ReplayJob], None] | None = None,
) -> ReplayJob:
    """Run a job until it is done, paused or stopped: a batch per transaction, then a pause long enough that
    the letters sent so far never run ahead of the job's rate. Returns the job as it left it."""
    job = ReplayJob.objects.get(pk=job_id)
    started, through = time.monotonic(), 0
    while True:
        job.refresh_from_db()
        if job.state != ReplayJob.RUNNING:
            return job
        size = job.batch_size
        if job.limit is not None:
            size = min(size, job.limit - (job.done + job.refused + job.failed))
        outcomes = _next_batch(job, size) if size > 0 else []
        if not outcomes:
            ReplayJob.objects.filter(pk=job.pk, state=ReplayJob.RUNNING).update(
                state=ReplayJob.DONE, finished_at=timezone.now(), updated_at=timezone.now()
            )
            job.refresh_from_db()
            logger.warning("%s job %s done: %s", job.action, job.pk, job)
            return job
        job.refresh_from_db()
        for outcome in outcomes:
            if on_letter:
                on_letter(outcome)
        if on_batch:
            on_batch(job)
        through += len(outcomes)
        ahead = started + through / job.rate_per_s - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def _next_batch(job: ReplayJob, size: int) -> list[LetterOutcome]:
    """Replay (or discard) the next `size` letters of the job and count them, in one transaction."""
    by = job.started_by  # as a replay of one letter records it; the job's audit entries say which job
    with transaction.atomic(durable=True):
        letters = list(
            job_letters(job).filter(pk__gt=job.cursor).select_for_update(skip_locked=True, of=("self",))[:size]
        )
        if not letters:
            return []
        outcomes = _discarded(letters, by) if job.action == ReplayJob.DISCARD else _replayed(letters, job, by)
        problems = [f"{dead_letter_label(o.letter)}: {o.why}" for o in outcomes if o.outcome in ("refused", "failed")]
        ReplayJob.objects.filter(pk=job.pk).update(
            cursor=Greatest(F("cursor"), letters[-1].pk),
            done=F("done") + sum(o.outcome in ("replayed", "discarded") for o in outcomes),
            refused=F("refused") + sum(o.outcome == "refused" for o in outcomes),
            failed=F("failed") + sum(o.outcome == "failed" for o in outcomes),
            last_problem=problems[-1][:2000] if problems else F("last_problem"),
            updated_at=timezone.now(),
        )
    return outcomes


def _discarded(letters: list[DeadLetter], by: str) -> list[LetterOutcome]:
    DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
        discarded_at=timezone.now(), discarded_by=by
    )
    _audit(letters, "dead_letter.discard", by=by)
    return [LetterOutcome(letter, "discarded") for letter in letters]


def _replayed(letters: list[DeadLetter], job: ReplayJob, by: str) -> list[LetterOutcome]:
    """Replay a batch of locked letters: all at once (one insert of their outbox rows, one update of the
    letters), and when that raises, one by one, so that the letter at fault alone fails and the others go."""
    refusals = {letter.pk: why_not_replayable(letter, force=job.force) for letter in letters}
    replayable = [letter for letter in letters if not refusals[letter.pk]]
    try:
        with transaction.atomic():
            _replay_all(replayable, by=by)
            _audit(replayable, "dead_letter.replay", by=by, forced=job.force)
    except Exception:  # noqa: BLE001 - found again below, letter by letter
        logger.warning("a batch of job %s failed; replaying its letters one by one", job.pk, exc_info=True)
    else:
        return [_outcome(letter, refusals[letter.pk]) for letter in letters]
    outcomes = []
    for letter in letters:
        if refusals[letter.pk]:
            outcomes.append(_outcome(letter, refusals[letter.pk]))
            continue
        try:
            with transaction.atomic():
                replay_in_transaction(DeadLetter.objects.get(pk=letter.pk), by=by)
                _audit([letter], "dead_letter.replay", by=by, forced=job.force)
        except Exception as error:  # noqa: BLE001 - one letter that fails must not keep the others back
            logger.exception("replay of %s failed", dead_letter_label(letter))
            outcomes.append(LetterOutcome(letter, "failed", f"{type(error).__name__}: {printable(error)}"))
        else:
            outcomes.append(LetterOutcome(letter, "replayed"))
    return outcomes


def _audit(letters: list[DeadLetter], action: str, *, by: str, **details: Any) -> None:
    """One audit entry per letter, as a replay or discard by hand writes, in the batch's transaction."""
    audit_record_many(
        actor=by,
        action=action,
        targets=[
            (
                f"dead_letter:{letter.pk}",
                {"message_id": letter.message_id, "routing_key": letter.routing_key, "queue": letter.queue, **details},
            )
            for letter in letters
        ],
    )


def _replay_all(letters: list[DeadLetter], *, by: str) -> None:
    """`replay_in_transaction` for many letters in two statements: at thousands a second, a statement per
    letter is what would hold a replay back."""
    if not letters:
        return
    rows = [OutboxMessage(**replay_message(letter)) for letter in letters]
    for row in rows:
        row.correlation_id = row.correlation_id or new_id()
    OutboxMessage.objects.bulk_create(rows)
    DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
        replayed_at=timezone.now(), replayed_by=by, replay_count=F("replay_count") + 1
    )
    if settings.MESSAGING_TRANSPORT == "inprocess":
        from messaging import inprocess

        transaction.on_commit(inprocess.wake)


def _outcome(letter: DeadLetter, refusal: str) -> LetterOutcome:
    return LetterOutcome(letter, "refused", refusal) if refusal else LetterOutcome(letter, "replayed")
