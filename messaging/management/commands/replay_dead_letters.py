"""Replays dead letters through the outbox, keeping their message ids, so the inbox still guards effects."""

import getpass
from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from messaging.correlation import printable
from messaging.deadletters import ReplayRefusedError, dead_letter_label, dead_letter_plan, dead_letter_replay
from messaging.models import DeadLetter


class Command(BaseCommand):
    help = (
        "Replay dead letters selected by id, type, reason, queue or time. Each is replayed once unless "
        "--force. Goes on past a letter it cannot replay; exits non-zero if any replay failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--id", dest="ids", type=int, action="append", default=[], help="a dead letter id")
        parser.add_argument("--type", dest="routing_key", help="routing key, e.g. payment.process")
        parser.add_argument("--reason", help="failure reason, e.g. retries_exhausted")
        parser.add_argument("--queue", help="the consumer queue, e.g. payments")
        parser.add_argument("--since", help="last failed at or after this ISO time")
        parser.add_argument("--until", help="last failed at or before this ISO time")
        parser.add_argument("--limit", type=int, default=100, help="replay at most this many (default 100)")
        parser.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
        parser.add_argument("--force", action="store_true", help="replay even if replayed or discarded before")
        parser.add_argument("--by", default=None, help="who is replaying (default: the OS user)")

    def handle(self, *args, **options):
        letters = self._select(options)
        if not letters:
            self.stdout.write("no dead letters match")
            return
        by = options["by"] or getpass.getuser()
        counts: Counter[str] = Counter()
        for letter in letters:
            outcome, line = (
                self._planned(letter, force=options["force"])
                if options["dry_run"]
                else self._replayed(letter, by=by, force=options["force"])
            )
            counts[outcome] += 1
            self.stdout.write(line)
        if not options["dry_run"]:
            self.stdout.write(f"{counts['replayed']} replayed, {counts['refused']} refused, {counts['failed']} failed")
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} dead letter(s) could not be replayed (the lines 'failed …')")

    def _replayed(self, letter: DeadLetter, *, by: str, force: bool) -> tuple[str, str]:
        """Replay one letter: ("replayed" | "refused" | "failed", the line that says so)."""
        try:
            plan = dead_letter_replay(letter=letter, by=by, force=force)
        except ReplayRefusedError as error:
            return "refused", f"refused {error}"
        except Exception as error:  # noqa: BLE001 - one letter that fails must not keep the others back
            return "failed", f"failed {_failure(letter, error)}"
        return "replayed", f"replayed {plan.describe()}"

    def _planned(self, letter: DeadLetter, *, force: bool) -> tuple[str, str]:
        try:
            return "planned", "would " + dead_letter_plan(letter, force=force).describe()
        except Exception as error:  # noqa: BLE001 - as in a replay, the next letter still gets its line
            return "failed", f"failed {_failure(letter, error)}"

    def _select(self, options) -> list[DeadLetter]:
        letters = DeadLetter.objects.order_by("first_failed_at", "id")
        if options["ids"]:
            letters = letters.filter(pk__in=options["ids"])
        for field, key in (("routing_key", "routing_key"), ("reason", "reason"), ("queue", "queue")):
            if options[key]:
                letters = letters.filter(**{field: options[key]})
        for bound, lookup in (("since", "last_failed_at__gte"), ("until", "last_failed_at__lte")):
            if options[bound]:
                moment = parse_datetime(options[bound])
                if moment is None:
                    raise CommandError(f"--{bound} must be an ISO date-time, got {options[bound]!r}")
                letters = letters.filter(**{lookup: moment})
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        return list(letters[: options["limit"]])


def _failure(letter: DeadLetter, error: Exception) -> str:
    return f"{dead_letter_label(letter)}: {type(error).__name__}: {printable(error)}"
