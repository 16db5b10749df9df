from django.contrib import admin

from payments.models import Account, ClosedOrder, LedgerEntry, Payment


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["customer_id", "balance", "opening_balance", "created_at"]
    search_fields = ["customer_id"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["id", "order_id", "customer_id", "amount", "status", "decline_code", "created_at"]
    list_filter = ["status", "decline_code"]
    search_fields = ["order_id", "customer_id"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["account", "kind", "amount", "payment", "created_at"]
    list_filter = ["kind"]


@admin.register(ClosedOrder)
class ClosedOrderAdmin(ReadOnlyAdmin):
    list_display = ["order_id", "reason", "closed_at"]
