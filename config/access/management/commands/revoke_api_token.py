"""Revokes an API token: from now on it answers 401."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from config.access.services import TokenError, api_token_revoke


class Command(BaseCommand):
    help = "Revoke an API token, given in full. Revoking a revoked token changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("token")
        parser.add_argument("--by", default=None, help="who is revoking it, for the audit log (default: OS user)")

    def handle(self, *args, **options):
        try:
            record = api_token_revoke(token=options["token"], by=options["by"] or getpass.getuser())
        except TokenError as error:
            raise CommandError(error.message) from None
        when = f"{record.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        self.stdout.write(f"revoked {record.role} token #{record.pk} ({record.prefix}…), since {when}")
