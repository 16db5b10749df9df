from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from config.kernel.admin_mixins import LargeTableMixin, ReadOnlyAdminMixin
from inventory.models import Product, Reservation, ReservationLine, StockMovement


@admin.register(Product)
class ProductAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["sku", "name", "price", "on_hand", "reserved", "available"]
    search_fields = ["sku", "name"]


class ReservationLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ReservationLine
    extra = 0


@admin.register(Reservation)
class ReservationAdmin(LargeTableMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["order", "status", "reason", "created_at"]
    list_filter = ["status"]
    search_fields = ["order_id"]
    inlines = [ReservationLineInline]

    @admin.display(description="order", ordering="order_id")
    def order(self, reservation: Reservation):
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:orders_order_change", args=[reservation.order_id]),
            reservation.order_id,
        )


@admin.register(StockMovement)
class StockMovementAdmin(LargeTableMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["product", "kind", "quantity", "order_id", "at"]
    list_filter = ["kind"]
