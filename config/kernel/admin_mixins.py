"""What every admin page of the product shares."""

from typing import ClassVar

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


class ReadOnlyAdminMixin:
    """A page to look at, never to edit by hand: every change of state goes through a service, at most as an
    admin action, so that no edit can break an invariant."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered list of a large table from PostgreSQL's own estimate of its rows.

    An exact `count(*)` reads the whole table: over the tens of millions of rows the outbox, the inbox or the
    sagas hold after a week, seconds at every page of the list. A filtered list is still counted exactly.
    """

    ESTIMATE_ABOVE = 100_000

    @cached_property
    def count(self) -> int:
        estimate = estimated_rows(self.object_list)
        if estimate is not None and estimate > self.ESTIMATE_ABOVE:
            return estimate
        return super().count


def estimated_rows(queryset) -> int | None:
    """The planner's row estimate of the table of an unfiltered queryset; None when it has none to give."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql" or queryset.query.where:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(queryset.model._meta.db_table)],
        )
        row = cursor.fetchone()
    return None if row is None or row[0] < 0 else int(row[0])  # -1: never analysed


class LargeTableMixin:
    """The list of a table that grows with every order: counted from the estimate when unfiltered, and with no
    second count of the whole table beside a filtered one."""

    paginator: ClassVar[type[Paginator]] = EstimatedCountPaginator
    show_full_result_count = False
