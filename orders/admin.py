"""Orders in the admin, the ops console's first stop for "what happened to order X": its lines, its payment and
its reservation, and its saga timeline with every message in and out. Nothing is editable; cancelling goes
through the saga's service, as the API's cancel does."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from config.admin_mixins import LargeTableMixin, ReadOnlyAdminMixin
from config.errors import DomainError
from inventory.models import Reservation
from orders.models import Order, OrderLine
from payments.models import Payment
from saga.admin import render_timeline
from saga.models import Saga
from saga.services import saga_cancel

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    fields = readonly_fields = ("sku", "quantity", "unit_price")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _table(headers: list[str], rows: list[tuple]) -> SafeString:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "\n", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows)
    )
    return format_html('<table class="ops-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)


def _link(view: str, pk, text) -> SafeString:
    return format_html('<a href="{}">{}</a>', reverse(view, args=[pk]), text)


class SagaStateAnnotation(TypedDict):
    saga_state: str | None  # None: the order has no saga (yet)


@admin.register(Order)
class OrderAdmin(LargeTableMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer_id", "status", "saga_state", "total", "currency", "failure_reason", "created_at"]
    list_filter = ["status", "failure_reason", "created_at"]
    search_fields = ["id", "customer_id", "idempotency_key"]
    ordering = ["-created_at"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "customer_id",
                    "status",
                    "total",
                    "currency",
                    "failure_reason",
                    "failure_detail",
                    "idempotency_key",
                    "created_at",
                    "updated_at",
                    "saga_link",
                ]
            },
        ),
        ("Payment and stock", {"fields": ["payment", "reservation"]}),
        ("Saga timeline", {"fields": ["timeline"]}),
    ]
    readonly_fields = [
        "id",
        "customer_id",
        "status",
        "total",
        "currency",
        "failure_reason",
        "failure_detail",
        "idempotency_key",
        "created_at",
        "updated_at",
        "saga_link",
        "payment",
        "reservation",
        "timeline",
    ]
    inlines = [OrderLineInline]
    actions = ["cancel"]

    def get_queryset(self, request) -> QuerySet[Order]:
        state = Saga.objects.filter(order_id=OuterRef("pk")).values("state")[:1]
        return super().get_queryset(request).annotate(saga_state=Subquery(state))

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("orders.change_order")

    @admin.action(description="Cancel the selected pending orders (refunds any payment)", permissions=["cancel"])
    def cancel(self, request, queryset: QuerySet[Order]) -> None:
        for order in queryset:
            try:
                saga_cancel(order_id=str(order.id), by=request.user.get_username())
            except DomainError as error:
                self.message_user(request, f"order {order.id}: {error}", level=messages.WARNING)
            else:
                self.message_user(request, f"order {order.id}: cancelling")

    @admin.display(description="saga state", ordering="saga_state")
    def saga_state(self, order: WithAnnotations[Order, SagaStateAnnotation]) -> str:
        return order.saga_state or "-"

    @admin.display(description="saga")
    def saga_link(self, order: Order) -> SafeString | str:
        if not Saga.objects.filter(order_id=order.id).exists():
            return "-"
        return _link("admin:saga_saga_change", order.id, "the saga of this order")

    @admin.display(description="payment")
    def payment(self, order: Order) -> SafeString | str:
        payments = Payment.objects.filter(order_id=order.id)
        if not payments:
            return "no payment"
        return _table(
            ["payment", "status", "amount", "decline code", "created", "updated"],
            [
                (
                    _link("admin:payments_payment_change", p.pk, p.pk),
                    p.status,
                    f"{p.amount} {p.currency}",
                    p.decline_code or "-",
                    p.created_at.isoformat(timespec="seconds"),
                    p.updated_at.isoformat(timespec="seconds"),
                )
                for p in payments
            ],
        )

    @admin.display(description="reservation")
    def reservation(self, order: Order) -> SafeString | str:
        reservations = Reservation.objects.filter(order_id=order.id).prefetch_related("lines__product")
        if not reservations:
            return "no reservation"
        return _table(
            ["reservation", "status", "reason", "lines", "updated"],
            [
                (
                    _link("admin:inventory_reservation_change", r.pk, r.pk),
                    r.status,
                    r.reason or "-",
                    ", ".join(f"{line.product_id} × {line.quantity}" for line in r.lines.all()),
                    r.updated_at.isoformat(timespec="seconds"),
                )
                for r in reservations
            ],
        )

    @admin.display(description="saga timeline")
    def timeline(self, order: Order) -> SafeString:
        return render_timeline(str(order.id))
