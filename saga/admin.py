"""The sagas in the admin: filtered by state, by how long they have been in it, stuck past their deadline, and
compensating without effect; each with its timeline. Read-only: a saga changes only by the messages it applies,
and by the one action that sends its compensation again through the saga's service."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from config.kernel.admin_mixins import LargeTableMixin, ReadOnlyAdminMixin
from config.kernel.errors import DomainError
from saga import registry
from saga.diagram import LABEL_SEPARATOR, arrows, initial_states
from saga.models import Saga, SagaTransition
from saga.services import flagged_sagas, saga_retry_compensation, stuck_sagas
from saga.timeline import saga_timeline
from saga.transitions import FINAL_STATES, State


def render_timeline(order_id: str) -> SafeString:
    """The saga timeline of an order as an HTML table: transitions, messages sent, handled and dead-lettered."""
    entries = saga_timeline(order_id=str(order_id))
    if not entries:
        return format_html("<p>{}</p>", "No saga and no messages for this order.")
    outbox = reverse("admin:messaging_outboxmessage_changelist")
    rows = format_html_join(
        "\n",
        '<tr class="timeline-{}"><td>{}</td><td>{}</td><td>{}</td><td><a href="{}?q={}"><code>{}</code></a></td>'
        "<td>{}</td><td>{}</td></tr>",
        (
            (
                entry.kind.replace(" ", "-"),
                entry.at.isoformat(timespec="milliseconds"),
                entry.kind,
                entry.message_type,
                outbox,
                entry.message_id,
                entry.message_id,
                entry.what,
                entry.detail,
            )
            for entry in entries
        ),
    )
    return format_html(
        '<table class="saga-timeline"><thead><tr><th>at</th><th>kind</th><th>message type</th><th>message id</th>'
        "<th>what</th><th>detail</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


# The StateFilter's choice of every final state at once: the sagas the overview's latencies are taken over.
ENDED = "ended"


START = "start"  # the node the first arrow leaves from: no state has this name
TAKEN_STYLE = "stroke:#c62828,stroke-width:3px"


def state_machine(path: list[tuple[str, str]]) -> str:
    """The saga's state machine as a Mermaid flowchart, drawn from the transition table (`saga.diagram.arrows`),
    with the arrows and states of `path` highlighted: the (from state, to state) of each step of one saga's
    timeline, the first from "" (where it started). A flowchart rather than the README's state diagram because
    Mermaid styles the arrows of a flowchart one by one (`linkStyle`), and a state diagram's not at all.

    One arrow for each pair of states, its labels joined, as `saga.diagram.mermaid` draws them."""
    labels: dict[tuple[str, str], list[str]] = {}
    for state in initial_states():
        labels[(START, state)] = []
    for arrow in arrows():
        labels.setdefault((arrow.from_state, arrow.to_state), []).append(arrow.label)
    taken = {(from_state or START, to_state) for from_state, to_state in path}
    lines = ["flowchart TD", f"    {START}(( ))"]
    lines += [f"    {s}([{s}])" if s in FINAL_STATES else f"    {s}[{s}]" for s in State]  # ends: rounded
    for (from_state, to_state), texts in labels.items():
        label = f'|"{LABEL_SEPARATOR.join(texts)}"|' if texts else ""
        lines.append(f"    {from_state} -->{label} {to_state}")
    lines += [f"    linkStyle {i} {TAKEN_STYLE}" for i, pair in enumerate(labels) if pair in taken]
    current = path[-1][1] if path else None
    visited = [state for state in State if state != current and any(state in pair for pair in taken)]
    lines.append("    classDef visited fill:#fde0dc,stroke:#c62828,stroke-width:2px")
    lines.append("    classDef current fill:#c62828,color:#fff,stroke:#7f0000,stroke-width:3px")
    if visited:
        lines.append(f"    class {','.join(visited)} visited")
    if current:
        lines.append(f"    class {current} current")
    return "\n".join(lines) + "\n"


def render_state_machine(saga: Saga) -> SafeString:
    steps = SagaTransition.objects.filter(saga=saga).order_by("at", "id").values_list("from_state", "to_state")
    path = list(steps)
    return format_html(
        '<pre class="mermaid" id="saga-state-machine">{}</pre><p class="help">{}</p>',
        state_machine(path),
        f"Drawn from the saga's transition table. In red: the {len(path)} step(s) this saga took, and in full "
        f"red its state now, {saga.state}.",
    )


class StateFilter(admin.SimpleListFilter):
    """The states of the saga definition in use, in its order, and all its final states at once. The parameter
    is the one Django's filter of a field with choices used, so that links kept from before still work."""

    title = "state"
    parameter_name = "state__exact"

    def lookups(self, request, model_admin):
        return [(state, state) for state in registry.definition().states] + [(ENDED, "ended (any final state)")]

    def queryset(self, request, queryset: QuerySet[Saga]) -> QuerySet[Saga]:
        if self.value() == ENDED:
            return queryset.filter(state__in=registry.definition().final_states)
        return queryset.filter(state=self.value()) if self.value() else queryset


class StuckFilter(admin.SimpleListFilter):
    """What the stuck_sagas health check counts, without its grace: past the deadline of their state (an ended
    saga: stock still reserved past the time to ask its release again), or flagged."""

    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return [("yes", "past deadline, or flagged"), ("no", "within deadline, or ended")]

    def queryset(self, request, queryset: QuerySet[Saga]) -> QuerySet[Saga]:
        overdue = stuck_sagas().values("pk")
        if self.value() == "yes":
            return queryset.filter(pk__in=overdue)
        if self.value() == "no":
            return queryset.exclude(pk__in=overdue)
        return queryset


class CompensationFilter(admin.SimpleListFilter):
    """The sagas whose compensation (a refund, or the release of stock after the end) has been sent again, and
    those flagged: sent as often as SAGA_COMPENSATION_MAX_ATTEMPTS allows, still without effect."""

    title = "compensation"
    parameter_name = "compensation"

    def lookups(self, request, model_admin):
        return [
            ("retried", "compensating, sent again"),
            ("flagged", f"flagged: {settings.SAGA_COMPENSATION_MAX_ATTEMPTS}+ attempts without effect"),
        ]

    def queryset(self, request, queryset: QuerySet[Saga]) -> QuerySet[Saga]:
        if self.value() == "retried":
            compensating = registry.definition().compensating_states
            return queryset.filter(state__in=compensating, compensation_attempts__gt=1)
        if self.value() == "flagged":
            return queryset.filter(pk__in=flagged_sagas().values("pk"))
        return queryset


class StateAgeFilter(admin.SimpleListFilter):
    """How long the saga has been in its current state: the age that matters for a pending one."""

    title = "in its state for"
    parameter_name = "in_state"
    BANDS = {"lt1m": (None, 60), "1m-10m": (60, 600), "10m-1h": (600, 3600), "gt1h": (3600, None)}

    def lookups(self, request, model_admin):
        return [
            ("lt1m", "less than a minute"),
            ("1m-10m", "1 to 10 minutes"),
            ("10m-1h", "10 minutes to an hour"),
            ("gt1h", "more than an hour"),
        ]

    def queryset(self, request, queryset: QuerySet[Saga]) -> QuerySet[Saga]:
        band = self.value()
        if band not in self.BANDS:
            return queryset
        low, high = self.BANDS[band]
        now = timezone.now()
        if low is not None:
            queryset = queryset.filter(state_entered_at__lte=now - timedelta(seconds=low))
        if high is not None:
            queryset = queryset.filter(state_entered_at__gt=now - timedelta(seconds=high))
        return queryset


@admin.register(Saga)
class SagaAdmin(LargeTableMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "order_link",
        "state",
        "failure_reason",
        "in_state_for",
        "deadline_at",
        "overdue",
        "compensation_attempts",
        "created_at",
    ]
    # state_entered_at: the overview links each minute of its charts to the sagas that ended in it.
    list_filter = [
        StateFilter,
        StuckFilter,
        CompensationFilter,
        StateAgeFilter,
        "failure_reason",
        "created_at",
        "state_entered_at",
    ]
    search_fields = ["order_id", "customer_id"]
    ordering = ["-created_at"]
    fields = (
        "order_link",
        "state",
        "failure_reason",
        "failure_detail",
        "state_entered_at",
        "deadline_at",
        "compensation_attempts",
        "compensation_due_at",
        "customer_id",
        "amount",
        "currency",
        "items",
        "created_at",
        "updated_at",
        "state_machine",
        "timeline",
    )
    readonly_fields = fields
    actions = ["retry_compensation"]

    def has_operate_permission(self, request) -> bool:
        """Sending a compensation again changes what happens next, so viewing the sagas is not enough."""
        return request.user.has_perm("saga.change_saga")

    @admin.action(
        description="Send the compensation of the selected sagas again now (refund, or release of stock)",
        permissions=["operate"],
    )
    def retry_compensation(self, request, queryset: QuerySet[Saga]) -> None:
        for saga in queryset:
            try:
                decision = saga_retry_compensation(order_id=str(saga.order_id), by=request.user.get_username())
            except DomainError as error:
                self.message_user(request, f"order {saga.order_id}: {error}", level=messages.WARNING)
            else:
                self.message_user(request, f"order {saga.order_id}: sent {', '.join(decision.emits)} again")

    @admin.display(description="order", ordering="order_id")
    def order_link(self, saga: Saga) -> SafeString:
        url = reverse("admin:orders_order_change", args=[saga.order_id])
        return format_html('<a href="{}">{}</a>', url, saga.order_id)

    @admin.display(description="in state for", ordering="state_entered_at")
    def in_state_for(self, saga: Saga) -> str:
        seconds = int((timezone.now() - saga.state_entered_at).total_seconds())
        return (
            f"{seconds // 3600}h {seconds % 3600 // 60}m {seconds % 60}s"
            if seconds >= 3600
            else f"{seconds // 60}m {seconds % 60}s"
        )

    @admin.display(description="past deadline", boolean=True)
    def overdue(self, saga: Saga) -> bool | None:
        deadline = saga.deadline_at
        return None if deadline is None else deadline < timezone.now()

    class Media:
        # Mermaid, vendored under config/static, draws the state machine in the page: no CDN.
        js = ["config/vendor/mermaid/mermaid.min.js", "saga/state_machine.js"]

    @admin.display(description="state machine")
    def state_machine(self, saga: Saga) -> SafeString:
        return render_state_machine(saga)

    @admin.display(description="saga timeline")
    def timeline(self, saga: Saga) -> SafeString:
        return render_timeline(str(saga.order_id))
