"""Orders in the admin, the ops console's first stop for "what happened to order X": its lines, its payment and
its reservation, and its saga timeline with every message in and out. Nothing is editable; cancelling goes
through the saga's service, as the API's cancel does.

Webhook endpoints are the one thing operators write here: where to POST how orders end, with which secret and
for which events. Each change is audited, its secret never shown back. Every attempt to deliver is listed on
its endpoint and on a page of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from config.access.services import audit_record
from config.kernel.admin_mixins import LargeTableMixin, ReadOnlyAdminMixin
from config.kernel.errors import DomainError
from inventory.models import Reservation
from orders.models import Order, OrderLine, WebhookAttempt, WebhookEndpoint
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


# The order's page, section by section.
ORDER_SECTIONS: dict[str | None, tuple[str, ...]] = {
    None: (
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
    ),
    "Payment and stock": ("payment", "reservation"),
    "Saga timeline": ("timeline",),
}


@admin.register(Order)
class OrderAdmin(LargeTableMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer_id", "status", "saga_state", "total", "currency", "failure_reason", "created_at"]
    list_filter = ["status", "failure_reason", "created_at"]
    search_fields = ["id", "customer_id", "idempotency_key"]
    ordering = ["-created_at"]
    fieldsets = [(title, {"fields": fields}) for title, fields in ORDER_SECTIONS.items()]
    # An order changes only through its saga: every field shown is read-only.
    readonly_fields = [field for fields in ORDER_SECTIONS.values() for field in fields]
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


# Attempts shown on an endpoint's page, the latest first; the list of attempts has them all.
RECENT_ATTEMPTS = 50
MIN_SECRET_LENGTH = 16


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", help_text="where to POST the events")
    events = forms.MultipleChoiceField(
        choices=WebhookEndpoint.Event.choices, widget=forms.CheckboxSelectMultiple, help_text="what to POST here"
    )
    # Write-only: never rendered back. Left blank on a change, the secret stays as it was.
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        min_length=MIN_SECRET_LENGTH,
        max_length=255,
        help_text=(
            f"the HMAC-SHA256 key the receiver verifies signatures with, at least {MIN_SECRET_LENGTH} characters; "
            "never shown again. Leave blank to keep the current one."
        ),
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "events", "active", "secret"]

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret") or ""
        if not secret:
            if self.instance._state.adding:
                raise forms.ValidationError("a new endpoint needs a secret")
            return self.instance.secret
        return secret


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "description", "event_list", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["url", "description"]
    readonly_fields = ["id", "created_at", "updated_at", "attempts"]
    fieldsets = [
        (None, {"fields": ["id", "url", "description", "events", "active", "secret", "created_at", "updated_at"]}),
        ("Delivery attempts", {"fields": ["attempts"]}),
    ]

    @admin.display(description="events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events) if isinstance(endpoint.events, list) else "-"

    @admin.display(description="latest attempts")
    def attempts(self, endpoint: WebhookEndpoint) -> SafeString | str:
        if endpoint._state.adding:
            return "-"
        latest = list(endpoint.attempts.order_by("-attempted_at", "-id")[:RECENT_ATTEMPTS])
        if not latest:
            return "none yet"
        listing = reverse("admin:orders_webhookattempt_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html(
            '{}<p><a href="{}">every attempt to this endpoint</a></p>',
            _table(
                ["at", "event", "event id", "order", "attempt", "status", "error", "ms"],
                [
                    (
                        a.attempted_at.isoformat(timespec="seconds"),
                        a.event_type,
                        a.event_id,
                        _link("admin:orders_order_change", a.order_id, a.order_id),
                        a.attempt,
                        a.status_code or "-",
                        a.error or "-",
                        f"{a.duration_ms:.0f}",
                    )
                    for a in latest
                ],
            ),
            listing,
        )

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            # What changed, by name only: the secret's value goes nowhere but its column.
            audit_record(
                actor=request.user.get_username(),
                action="webhook_endpoint.change" if change else "webhook_endpoint.create",
                target=f"webhook_endpoint:{obj.pk}",
                details={"changed": sorted(form.changed_data), "active": obj.active, "events": obj.events},
            )

    def delete_model(self, request, obj: WebhookEndpoint) -> None:
        with transaction.atomic():
            audit_record(
                actor=request.user.get_username(), action="webhook_endpoint.delete", target=f"webhook_endpoint:{obj.pk}"
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset: QuerySet[WebhookEndpoint]) -> None:
        with transaction.atomic():
            for endpoint_id in queryset.values_list("pk", flat=True):
                audit_record(
                    actor=request.user.get_username(),
                    action="webhook_endpoint.delete",
                    target=f"webhook_endpoint:{endpoint_id}",
                )
            super().delete_queryset(request, queryset)


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(LargeTableMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "attempted_at",
        "endpoint",
        "event_type",
        "event_id",
        "order_id",
        "attempt",
        "status_code",
        "error",
        "succeeded",
        "duration_ms",
    ]
    list_filter = ["succeeded", "event_type", "endpoint", "attempted_at"]
    search_fields = ["event_id", "order_id"]
    list_select_related = ["endpoint"]
    ordering = ["-attempted_at", "-id"]
