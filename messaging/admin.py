import logging

from django.contrib import admin, messages
from django.utils import timezone

from config.kernel.admin_mixins import LargeTableMixin, ReadOnlyAdmin
from messaging.correlation import printable
from messaging.deadletters import ReplayRefusedError, dead_letter_discard, dead_letter_label, dead_letter_replay
from messaging.models import DeadLetter, InboxMessage, OutboxMessage, WorkerHeartbeat

logger = logging.getLogger(__name__)


class PublishedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("pending", "pending"), ("published", "published")]

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "published":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = ["message_id", "routing_key", "order_id", "created_at", "published_at", "lag", "target_queue"]
    list_filter = [PublishedFilter, "routing_key"]
    search_fields = ["message_id", "order_id", "correlation_id"]
    ordering = ["-id"]  # newest first through the primary key: created_at has an index for pending rows only

    @admin.display(description="lag")
    def lag(self, row: OutboxMessage) -> str:
        """From commit to the broker's confirm; for a pending row, how long it has waited so far."""
        if row.published_at is None:
            return f"pending {(timezone.now() - row.created_at).total_seconds():.1f} s"
        return f"{(row.published_at - row.created_at).total_seconds() * 1000:.0f} ms"


@admin.register(InboxMessage)
class InboxMessageAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = ["consumer", "message_id", "routing_key", "processed_at"]
    list_filter = ["consumer", "routing_key"]
    search_fields = ["message_id"]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "message_id",
        "routing_key",
        "queue",
        "reason",
        "attempts",
        "last_failed_at",
        "replayed_at",
        "discarded_at",
    ]
    list_filter = [
        "routing_key",
        "reason",
        "queue",
        "last_failed_at",
        ("replayed_at", admin.EmptyFieldListFilter),
        ("discarded_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["message_id", "body"]
    actions = ["replay", "discard"]

    def has_operate_permission(self, request) -> bool:
        """Replaying and discarding change what happens next, so viewing the dead letters is not enough."""
        return request.user.has_perm("messaging.change_deadletter")

    @admin.action(description="Replay the selected dead letters (once each)", permissions=["operate"])
    def replay(self, request, queryset):
        """Replays each letter it can; says which it refused and why, and names those whose replay failed."""
        failed = []
        for letter in queryset:
            try:
                dead_letter_replay(letter=letter, by=request.user.get_username())
            except ReplayRefusedError as error:
                self.message_user(request, str(error), level=messages.WARNING)
            except Exception as error:  # noqa: BLE001 - the others are still replayed, and the page still answers
                logger.exception("replay of dead letter %s failed", letter.pk)
                failed.append(f"{dead_letter_label(letter)}: {type(error).__name__}: {printable(error)}")
            else:
                self.message_user(request, f"replayed dead letter {letter.pk}")
        if failed:
            self.message_user(
                request, f"could not replay {len(failed)} dead letter(s): " + "; ".join(failed), level=messages.ERROR
            )

    @admin.action(description="Discard the selected dead letters", permissions=["operate"])
    def discard(self, request, queryset):
        for letter in queryset:
            dead_letter_discard(letter=letter, by=request.user.get_username())
        self.message_user(request, f"discarded {queryset.count()} dead letter(s)")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    """Which delivery loops are alive: a row per (worker process, loop), with its last beat."""

    list_display = ["worker", "loop", "started_at", "beat_at", "silent_for"]
    list_filter = ["worker", "loop"]
    ordering = ["-beat_at"]

    @admin.display(description="silent for", ordering="beat_at")
    def silent_for(self, row: WorkerHeartbeat) -> str:
        return f"{(timezone.now() - row.beat_at).total_seconds():.0f} s"
