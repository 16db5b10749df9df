"""Replays dead letters through the outbox, keeping their message ids, so the inbox still guards effects."""

import getpass
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from messaging.correlation import printable
from messaging.deadletters import ReplayPlan, dead_letter_label, dead_letter_plan, replay_note
from messaging.models import DeadLetter, ReplayJob
from messaging.replays import (
    LetterOutcome,
    job_letters,
    replay_job_pause,
    replay_job_resume,
    replay_job_run,
    replay_job_start,
)

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Replay (or --discard) dead letters selected by id, queue, type, reason, fingerprint or time, in batches "
        "at a bounded rate, as a replay job the admin shows too. Each is replayed once unless --force. Goes on "
        "past a letter it cannot replay; exits non-zero if any replay failed. --background hands the job to a "
        "worker; Ctrl-C pauses it, --resume goes on."
    )

    def add_arguments(self, parser):
        parser.add_argument("--id", dest="ids", type=int, action="append", default=[], help="a dead letter id")
        parser.add_argument("--type", dest="routing_key", help="routing key, e.g. payment.process")
        parser.add_argument("--reason", help="failure reason, e.g. retries_exhausted")
        parser.add_argument("--queue", help="the consumer queue, e.g. payments")
        parser.add_argument("--fingerprint", help="the failure's fingerprint, as the admin's groups show it")
        parser.add_argument("--since", help="last failed at or after this ISO time")
        parser.add_argument("--until", help="last failed at or before this ISO time")
        parser.add_argument("--limit", type=int, default=100, help="replay at most this many (default 100)")
        parser.add_argument("--all", action="store_true", help="no limit: every letter the filters match")
        parser.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
        parser.add_argument("--force", action="store_true", help="replay even if replayed or discarded before")
        parser.add_argument("--discard", action="store_true", help="discard the letters instead of replaying them")
        parser.add_argument("--batch-size", type=int, help="letters per transaction (DEAD_LETTER_REPLAY_BATCH_SIZE)")
        parser.add_argument("--rate", type=float, help="at most this many a second (DEAD_LETTER_REPLAY_RATE_PER_S)")
        parser.add_argument("--background", action="store_true", help="start the job on a worker and return")
        parser.add_argument("--resume", type=int, metavar="JOB", help="resume a paused job here")
        parser.add_argument("--by", default=None, help="who is replaying (default: the OS user)")

    def handle(self, *args, **options):
        by = options["by"] or getpass.getuser()
        if options["resume"]:
            return self._resumed(options["resume"], by)
        selection = self._selection(options)
        if options["dry_run"]:
            return self._dry_run(selection)
        if not job_letters(ReplayJob(**selection)).exists():
            self.stdout.write("no dead letters match")
            return
        job = replay_job_start(
            by=by,
            dispatch=options["background"],
            batch_size=options["batch_size"],
            rate_per_s=options["rate"],
            **selection,
        )
        if options["background"]:
            self.stdout.write(f"started {job.action} job {job.pk} over {job.total} letters ({job.selection()})")
            return
        self._run(job, by)

    def _resumed(self, job_id: int, by: str) -> None:
        job = ReplayJob.objects.filter(pk=job_id).first()
        if job is None:
            raise CommandError(f"there is no replay job {job_id}")
        if not replay_job_resume(job, by=by, dispatch=False):
            raise CommandError(f"job {job_id} is {job.state}: only a paused (or interrupted) job can be resumed")
        self._run(job, by)

    def _run(self, job: ReplayJob, by: str) -> None:
        progress = Progress(self.stdout, job)
        try:
            job = replay_job_run(job.pk, on_letter=progress.letter, on_batch=progress.batch)
        except KeyboardInterrupt:
            replay_job_pause(job, by=by)
            progress.close()
            self.stdout.write(f"paused job {job.pk}; go on with: manage.py replay_dead_letters --resume {job.pk}")
            return
        progress.close()
        counts = progress.counts
        done = counts.get("replayed", 0) + counts.get("discarded", 0)
        self.stdout.write(
            f"{done} {job.action}ed, {counts.get('refused', 0)} refused, {counts.get('failed', 0)} failed"
        )
        if counts.get("failed"):
            raise CommandError(f"{counts['failed']} dead letter(s) could not be replayed (the lines 'failed …')")

    def _dry_run(self, selection: dict) -> None:
        letters = list(job_letters(ReplayJob(**{**selection, "force": True}))[: selection["limit"]])
        if not letters:
            self.stdout.write("no dead letters match")
        for letter in letters:
            if selection["action"] == ReplayJob.DISCARD:
                self.stdout.write(f"would discard {dead_letter_label(letter)}")
                continue
            try:
                self.stdout.write("would " + dead_letter_plan(letter, force=selection["force"]).describe())
            except Exception as error:  # noqa: BLE001 - as in a replay, the next letter still gets its line
                self.stdout.write(f"failed {_failure(letter, error)}")

    def _selection(self, options) -> dict:
        moments = {}
        for bound in ("since", "until"):
            if options[bound]:
                moments[bound] = parse_datetime(options[bound])
                if moments[bound] is None:
                    raise CommandError(f"--{bound} must be an ISO date-time, got {options[bound]!r}")
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        return {
            "action": ReplayJob.DISCARD if options["discard"] else ReplayJob.REPLAY,
            "queue": options["queue"] or "",
            "routing_key": options["routing_key"] or "",
            "reason": options["reason"] or "",
            "fingerprint": options["fingerprint"] or "",
            "letter_ids": options["ids"],
            "force": options["force"],
            "limit": None if options["all"] else options["limit"],
            **moments,
        }


class Progress:
    """A job's progress as the command shows it: a bar redrawn in place in a terminal; elsewhere (a log, a
    pipe) a line per letter and a progress line per batch. Letters refused or failed get a line either way."""

    def __init__(self, stdout, job: ReplayJob):
        self.stdout, self.job = stdout, job
        self.counts: dict[str, int] = {}
        self.terminal = stdout.isatty()
        self.began = time.monotonic()
        self.drawn = False

    def letter(self, outcome: LetterOutcome) -> None:
        self.counts[outcome.outcome] = self.counts.get(outcome.outcome, 0) + 1
        line = _line(outcome)
        if outcome.outcome in ("refused", "failed") or not self.terminal:
            self._above_the_bar(line)

    def batch(self, job: ReplayJob) -> None:
        through = job.done + job.refused + job.failed
        rate = sum(self.counts.values()) / max(time.monotonic() - self.began, 1e-6)
        if not self.terminal:
            self.stdout.write(f"progress: {through}/{job.total} ({rate:.0f}/s)")
            return
        filled = int(BAR_WIDTH * through / job.total) if job.total else BAR_WIDTH
        percent = 100 * through / job.total if job.total else 100
        bar = "#" * min(filled, BAR_WIDTH) + "." * max(BAR_WIDTH - filled, 0)
        self.stdout.write(f"\r[{bar}] {through}/{job.total} {percent:3.0f}% {rate:.0f}/s", ending="")
        self.stdout.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stdout.write("")

    def _above_the_bar(self, line: str) -> None:
        if self.drawn:
            self.stdout.write("\r\033[K", ending="")
        self.stdout.write(line)


def _line(outcome: LetterOutcome) -> str:
    letter = outcome.letter
    if outcome.outcome == "replayed":
        return "replayed " + ReplayPlan(letter, "replay", replay_note(letter), False).describe()
    if outcome.outcome == "discarded":
        return f"discarded {dead_letter_label(letter)}"
    return f"{outcome.outcome} {dead_letter_label(letter)}: {outcome.why}"


def _failure(letter: DeadLetter, error: Exception) -> str:
    return f"{dead_letter_label(letter)}: {type(error).__name__}: {printable(error)}"
