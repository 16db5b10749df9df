"""Checks every invariant of DESIGN §4 over the whole database, or over the orders of a recent window; exits
non-zero on any violation."""

import re
import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from config.audit import audit
from config.kernel.postgresql.base import statements_unbounded

_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def window(text: str) -> timedelta:
    """`30m`, `24h` or `7d` as a timedelta."""
    match = re.fullmatch(r"([1-9][0-9]*)([mhd])", text.strip())
    if match is None:
        raise CommandError(f"--since takes a number and a unit m, h or d, such as 24h; not {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


class Command(BaseCommand):
    help = "Audit the invariants: orders end, money and stock are conserved, no message is lost."

    def add_arguments(self, parser):
        parser.add_argument(
            "--settled",
            action="store_true",
            help="the system is quiet: any order or message still in flight is a violation",
        )
        parser.add_argument(
            "--since",
            metavar="WINDOW",
            help="check only the orders placed and messages sent in this recent window (30m, "
            "24h, 7d), as a large database needs; money and stock are always summed whole",
        )

    def handle(self, *args, settled: bool = False, since: str | None = None, **options):
        start = None if since is None else timezone.now() - window(since)
        # Its sums read every movement and payment: on a large database, longer than the requests' bound.
        with statements_unbounded(connection):
            violations = audit(settled=settled, since=start)
        for violation in violations:
            self.stdout.write(str(violation))
        if violations:
            self.stderr.write(f"{len(violations)} violation(s)")
            sys.exit(1)
        self.stdout.write("audit clean: every invariant holds")
