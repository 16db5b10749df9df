"""Replays dead letters through the outbox, keeping their message ids, so the inbox still guards effects."""

import getpass

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from messaging.deadletters import ReplayRefusedError, dead_letter_plan, dead_letter_replay
from messaging.models import DeadLetter


class Command(BaseCommand):
    help = "Replay dead letters selected by id, type, reason, queue or time. Each is replayed once unless --force."

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
        replayed = refused = 0
        for letter in letters:
            if options["dry_run"]:
                self.stdout.write("would " + dead_letter_plan(letter, force=options["force"]).describe())
                continue
            try:
                plan = dead_letter_replay(letter=letter, by=by, force=options["force"])
            except ReplayRefusedError as error:
                refused += 1
                self.stdout.write(f"refused {error}")
            else:
                replayed += 1
                self.stdout.write(f"replayed {plan.describe()}")
        if not options["dry_run"]:
            self.stdout.write(f"{replayed} replayed, {refused} refused")

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
