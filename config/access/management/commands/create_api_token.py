"""Issues an API token. The token is printed once, on the last line, and stored only as a hash."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from config.access.models import ApiToken
from config.access.services import TokenError, api_token_create


class Command(BaseCommand):
    help = "Create an API token for an operator, or for one customer. Prints the token on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--role", required=True, choices=ApiToken.Role.values)
        parser.add_argument("--customer-id", help="the customer a customer token is bound to (required for it)")
        parser.add_argument("--label", default="", help="a note for the admin, e.g. who holds the token")
        parser.add_argument("--by", default=None, help="who is creating it, for the audit log (default: OS user)")

    def handle(self, *args, **options):
        try:
            issued = api_token_create(
                role=options["role"],
                customer_id=options["customer_id"],
                label=options["label"],
                by=options["by"] or getpass.getuser(),
            )
        except TokenError as error:
            raise CommandError(error.message) from None
        record = issued.record
        bound = f" for customer {record.customer_id}" if record.customer_id else ""
        self.stdout.write(f"created {record.role} token #{record.pk}{bound}; it is shown once, keep it safe:")
        self.stdout.write(issued.token)
