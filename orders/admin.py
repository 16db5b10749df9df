from django.contrib import admin

from orders.models import Order, OrderLine
from saga.models import SagaTransition


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    readonly_fields = ["sku", "quantity", "unit_price"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "customer_id", "status", "total", "currency", "failure_reason", "created_at"]
    list_filter = ["status", "failure_reason", "created_at"]
    search_fields = ["id", "customer_id", "idempotency_key"]
    readonly_fields = [f.name for f in Order._meta.fields] + ["timeline"]
    inlines = [OrderLineInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="saga timeline")
    def timeline(self, order: Order) -> str:
        steps = SagaTransition.objects.filter(saga_id=order.id).order_by("at", "id")
        return "\n".join(
            f"{s.at:%H:%M:%S.%f} {s.from_state or '∅'} → {s.to_state} on {s.message_type} {s.message_id}"
            for s in steps
        ) or "(no saga)"
