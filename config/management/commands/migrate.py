"""Django's migrate, without the statement timeout of the request and message paths: on a large database a
migration's statement (an index built concurrently, a data migration's update) may take far longer."""

from django.core.management.commands import migrate
from django.db import connections

from config.kernel.postgresql.base import statements_unbounded


class Command(migrate.Command):
    def handle(self, *args, **options):
        with statements_unbounded(connections[options["database"]]):
            return super().handle(*args, **options)
