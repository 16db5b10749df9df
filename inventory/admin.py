from django.contrib import admin

from inventory.models import Product, Reservation, ReservationLine, StockMovement


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Product)
class ProductAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["sku", "name", "price", "on_hand", "reserved", "available"]
    search_fields = ["sku", "name"]


class ReservationLineInline(ReadOnlyMixin, admin.TabularInline):
    model = ReservationLine
    extra = 0


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["order_id", "status", "reason", "created_at"]
    list_filter = ["status"]
    search_fields = ["order_id"]
    inlines = [ReservationLineInline]


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["product", "kind", "quantity", "order_id", "at"]
    list_filter = ["kind"]
