"""Checks every invariant of DESIGN §4 over the whole database; exits non-zero on any violation."""

import sys

from django.core.management.base import BaseCommand

from saga.audit import audit


class Command(BaseCommand):
    help = "Audit the invariants: orders end, money and stock are conserved, no message is lost."

    def add_arguments(self, parser):
        parser.add_argument("--settled", action="store_true",
                            help="the system is quiet: any order or message still in flight is a violation")

    def handle(self, *args, settled: bool = False, **options):
        violations = audit(settled=settled)
        for violation in violations:
            self.stdout.write(str(violation))
        if violations:
            self.stderr.write(f"{len(violations)} violation(s)")
            sys.exit(1)
        self.stdout.write("audit clean: every invariant holds")
