from django.contrib import admin

from saga.models import Saga, SagaTransition


class SagaTransitionInline(admin.TabularInline):
    model = SagaTransition
    extra = 0
    can_delete = False
    fields = readonly_fields = ["at", "from_state", "to_state", "message_type", "message_id", "emitted"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Saga)
class SagaAdmin(admin.ModelAdmin):
    list_display = ["order_id", "state", "failure_reason", "state_entered_at", "deadline_at", "created_at"]
    list_filter = ["state", "failure_reason"]
    search_fields = ["order_id", "customer_id"]
    readonly_fields = [f.name for f in Saga._meta.fields]
    inlines = [SagaTransitionInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
