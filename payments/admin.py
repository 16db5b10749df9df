from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from config.kernel.admin_mixins import LargeTableMixin, ReadOnlyAdmin
from payments.models import Account, ClosedOrder, LedgerEntry, Payment


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["customer_id", "balance", "opening_balance", "created_at"]
    search_fields = ["customer_id"]


@admin.register(Payment)
class PaymentAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = ["id", "order", "customer_id", "amount", "status", "decline_code", "created_at"]
    list_filter = ["status", "decline_code"]
    search_fields = ["order_id", "customer_id"]

    @admin.display(description="order", ordering="order_id")
    def order(self, payment: Payment):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[payment.order_id]), payment.order_id
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = ["account", "kind", "amount", "payment", "created_at"]
    list_filter = ["kind"]


@admin.register(ClosedOrder)
class ClosedOrderAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = ["order_id", "reason", "closed_at"]
