from django.contrib import admin, messages

from messaging.deadletters import ReplayRefusedError, dead_letter_discard, dead_letter_replay

from messaging.models import DeadLetter, InboxMessage, OutboxMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["message_id", "routing_key", "order_id", "created_at", "published_at"]
    list_filter = ["routing_key", ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["message_id", "order_id", "correlation_id"]


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["consumer", "message_id", "routing_key", "processed_at"]
    list_filter = ["consumer", "routing_key"]
    search_fields = ["message_id"]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["id", "message_id", "routing_key", "queue", "reason", "attempts", "last_failed_at",
                    "replayed_at", "discarded_at"]
    list_filter = ["routing_key", "reason", "queue", "last_failed_at", ("replayed_at", admin.EmptyFieldListFilter)]
    search_fields = ["message_id", "body"]
    actions = ["replay", "discard"]

    @admin.action(description="Replay the selected dead letters (once each)", permissions=["view"])
    def replay(self, request, queryset):
        for letter in queryset:
            try:
                dead_letter_replay(letter=letter, by=request.user.get_username())
            except ReplayRefusedError as error:
                self.message_user(request, str(error), level=messages.WARNING)
            else:
                self.message_user(request, f"replayed dead letter {letter.pk}")

    @admin.action(description="Discard the selected dead letters", permissions=["view"])
    def discard(self, request, queryset):
        for letter in queryset:
            dead_letter_discard(letter=letter, by=request.user.get_username())
        self.message_user(request, f"discarded {queryset.count()} dead letter(s)")
