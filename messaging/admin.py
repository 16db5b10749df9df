from django.contrib import admin

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
    list_display = ["message_id", "routing_key", "queue", "reason", "attempts", "last_failed_at", "replayed_at"]
    list_filter = ["routing_key", "reason", "queue", "last_failed_at"]
    search_fields = ["message_id", "body"]
