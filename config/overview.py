"""The operations overview: the admin's home page, whether work is moving, at a glance. Read-only.

In config, the wiring, because it reads every context: the sagas, the orders behind them, the dead letters, the
outbox and the workers' heartbeats. Every figure is an aggregate over an indexed time range or over a small
table, or one the product already keeps (`saga_counts`, `stuck_sagas`, the heartbeats), so the page costs the
same at millions of orders as at a hundred:

- sagas by state now: `saga.selectors.saga_counts`, the tally /metrics reads (final sagas counted once);
- started per minute: `saga.created_at` in the window (its index);
- completed, failed (by reason) and cancelled per minute, and p50/p99 from order to final state: the sagas that
  entered a final state in the window, through the index on (state, state_entered_at);
- stuck and flagged sagas: `saga.services.stuck_sagas` and `flagged_sagas`, as /health counts them;
- dead letters: the open ones grouped by queue, type and reason; their growth per minute by `last_failed_at`
  (its index);
- outbox lag: the unpublished rows, through the partial index on them;
- heartbeats: one row per (worker, loop), pruned after a day.

Each figure carries the URL of the filtered admin list behind it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from urllib.parse import urlencode

from django.contrib import admin
from django.db import connection
from django.db.models import Count, ExpressionWrapper, F, Max, Min, Q
from django.db.models.fields import DurationField
from django.db.models.functions import TruncMinute
from django.urls import reverse
from django.utils import timezone

from messaging.heartbeat import required_loops, stuck_loops
from messaging.models import DeadLetter, OutboxMessage, WorkerHeartbeat
from saga import registry
from saga.admin import ENDED
from saga.models import Saga
from saga.selectors import saga_counts
from saga.services import flagged_sagas, stuck_sagas

WINDOW = timedelta(hours=3)
# A loop silent for this long is shown as silent: three missed beats at the default interval.
SILENT_AFTER_S = 30.0
OPEN_LETTER = Q(replayed_at__isnull=True, discarded_at__isnull=True)


def admin_list(model, **filters) -> str:
    """The URL of the admin list of `model`, filtered by the list filters' own parameters."""
    url = _changelist(model._meta.app_label, model._meta.model_name)
    return f"{url}?{urlencode(filters)}" if filters else url


@cache
def _changelist(app_label: str, model_name: str) -> str:
    # Looked up once: the charts link every minute of the window, a thousand links a page.
    return reverse(f"admin:{app_label}_{model_name}_changelist")


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass(frozen=True)
class Figure:
    label: str
    value: int | float | None
    url: str


@dataclass
class Series:
    """Counts per minute over the window, one value per minute of `Overview.minutes`. The list behind a minute's
    value is `url` narrowed to that minute of `time_field`; the page's script builds the same link for a bar."""

    label: str
    values: list[int]
    url: str
    time_field: str

    def url_at(self, minute: datetime) -> str:
        """The admin list of the rows counted in `minute`."""
        return f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(_minute_range(minute, self.time_field))}"


@dataclass
class Overview:
    now: datetime
    since: datetime
    minutes: list[datetime]
    states: list[Figure]
    flow: list[Series]
    failures_by_reason: list[Series]
    failure_totals: list[Figure]
    latency_s: dict[str, float | None]
    ended_url: str
    finished_in_window: int
    stuck: Figure
    flagged: Figure
    dead_letter_groups: list[dict]
    dead_letters_open: Figure
    dead_letter_growth: Series
    outbox_pending: Figure
    outbox_oldest_age_s: float
    heartbeats: list[dict]
    missing_loops: list[str] = field(default_factory=list)

    def charts(self) -> dict:
        """What the page's charts draw, as JSON: labels, the minutes they start at, the series."""
        return {
            "labels": [moment.strftime("%H:%M") for moment in self.minutes],
            "minutes": [_iso(moment) for moment in [*self.minutes, self.minutes[-1] + timedelta(minutes=1)]],
            "flow": [vars(series) for series in self.flow],
            "failures": [vars(series) for series in self.failures_by_reason],
            "dead_letters": [vars(self.dead_letter_growth)],
        }


def overview(*, now: datetime | None = None, window: timedelta = WINDOW) -> Overview:
    """Every figure of the page, read in a dozen aggregate queries."""
    now = now or timezone.now()
    since = (now - window).replace(second=0, microsecond=0)
    minutes = [since + timedelta(minutes=i) for i in range(int((now - since).total_seconds() // 60) + 1)]
    definition = registry.definition()
    flow, failures, failure_totals = _flow(definition, since, minutes)
    outbox = OutboxMessage.objects.filter(published_at__isnull=True).aggregate(n=Count("*"), oldest=Min("created_at"))
    groups, open_letters = _dead_letter_groups()
    loops, missing = _heartbeats()
    return Overview(
        now=now,
        since=since,
        minutes=minutes,
        states=_states(definition),
        flow=flow,
        failures_by_reason=failures,
        failure_totals=failure_totals,
        latency_s=_latency(definition, since),
        ended_url=admin_list(Saga, state__exact=ENDED, state_entered_at__gte=_iso(since)),
        finished_in_window=sum(sum(series.values) for series in flow[1:]),
        stuck=Figure("stuck", stuck_sagas().count(), admin_list(Saga, stuck="yes")),
        flagged=Figure("flagged", flagged_sagas().count(), admin_list(Saga, compensation="flagged")),
        dead_letter_groups=groups,
        dead_letters_open=Figure("open", open_letters, _letters_url()),
        dead_letter_growth=_dead_letter_growth(since, minutes),
        outbox_pending=Figure("pending", outbox["n"], admin_list(OutboxMessage, status="pending")),
        outbox_oldest_age_s=(now - outbox["oldest"]).total_seconds() if outbox["oldest"] else 0.0,
        heartbeats=loops,
        missing_loops=missing,
    )


def _states(definition) -> list[Figure]:
    counts: dict[str, int] = dict.fromkeys(definition.states, 0)
    for (state, _reason), n in saga_counts().items():
        counts[state] = counts.get(state, 0) + n
    return [Figure(state, n, admin_list(Saga, state__exact=state)) for state, n in counts.items()]


def _minute_range(moment: datetime, field_name: str) -> dict[str, str]:
    return {f"{field_name}__gte": _iso(moment), f"{field_name}__lt": _iso(moment + timedelta(minutes=1))}


def _per_minute(rows, minutes: list[datetime]) -> list[int]:
    by_minute = {minute: n for minute, n in rows}
    return [by_minute.get(minute, 0) for minute in minutes]


def _flow(definition, since: datetime, minutes: list[datetime]) -> tuple[list[Series], list[Series], list[Figure]]:
    """Started, completed, failed and cancelled per minute; the failures per minute by reason; their totals."""
    started_rows = (
        Saga.objects.filter(created_at__gte=since)
        .annotate(minute=TruncMinute("created_at"))
        .values_list("minute")
        .annotate(n=Count("*"))
        .order_by()
    )
    flow = [Series("started", _per_minute(started_rows, minutes), admin_list(Saga), "created_at")]
    ended = (
        Saga.objects.filter(state__in=definition.final_states, state_entered_at__gte=since)
        .annotate(minute=TruncMinute("state_entered_at"))
        .values_list("state", "failure_reason", "minute")
        .annotate(n=Count("*"))
        .order_by()
    )
    by_state: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    by_reason: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for state, reason, minute, n in ended:
        by_state[state][minute] += n
        if state == definition.failed_state:
            by_reason[reason or "unknown"][minute] += n
    for state, label in (
        (definition.completed_state, "completed"),
        (definition.failed_state, "failed"),
        (definition.cancelled_state, "cancelled"),
    ):
        flow.append(
            Series(
                label,
                [by_state[state].get(m, 0) for m in minutes],
                admin_list(Saga, state__exact=state),
                "state_entered_at",
            )
        )
    failures = [
        Series(
            reason,
            [counts.get(m, 0) for m in minutes],
            admin_list(Saga, state__exact=definition.failed_state, failure_reason=reason),
            "state_entered_at",
        )
        for reason, counts in sorted(by_reason.items())
    ]
    totals = [
        Figure(
            series.label,
            sum(series.values),
            admin_list(
                Saga,
                state__exact=definition.failed_state,
                failure_reason=series.label,
                state_entered_at__gte=_iso(since),
            ),
        )
        for series in failures
    ]
    return flow, failures, totals


def _latency(definition, since: datetime) -> dict[str, float | None]:
    """p50 and p99 of the time from the order (its saga's creation, in the same transaction) to its final state,
    over the sagas that ended in the window."""
    took = ExpressionWrapper(F("state_entered_at") - F("created_at"), output_field=DurationField())
    ended = Saga.objects.filter(state__in=definition.final_states, state_entered_at__gte=since).annotate(took=took)
    if connection.vendor == "postgresql":
        # The ORM writes the filter, so that it is the one the index serves; PostgreSQL the percentiles, in one pass.
        sql, params = ended.values("took").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM took)) "
                f"FROM ({sql}) AS ended",
                params,
            )
            p50, p99 = cursor.fetchone()[0] or (None, None)
        return {"p50": p50, "p99": p99}
    durations = sorted(d.total_seconds() for d in ended.values_list("took", flat=True))
    return {"p50": _percentile(durations, 0.5), "p99": _percentile(durations, 0.99)}


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont."""
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _letters_url(**filters: str) -> str:
    return admin_list(DeadLetter, replayed_at__isempty="1", discarded_at__isempty="1", **filters)


def _dead_letter_groups() -> tuple[list[dict], int]:
    """The open dead letters by (queue, message type, reason), largest group first, with first and last seen."""
    rows = (
        DeadLetter.objects.filter(OPEN_LETTER)
        .values("queue", "routing_key", "reason")
        .annotate(n=Count("*"), first=Min("first_failed_at"), last=Max("last_failed_at"))
        .order_by("-n", "queue", "routing_key", "reason")
    )
    groups = [
        {
            **row,
            "url": _letters_url(queue=row["queue"], routing_key=row["routing_key"], reason=row["reason"]),
        }
        for row in rows
    ]
    return groups, sum(group["n"] for group in groups)


def _dead_letter_growth(since: datetime, minutes: list[datetime]) -> Series:
    rows = (
        DeadLetter.objects.filter(last_failed_at__gte=since)
        .annotate(minute=TruncMinute("last_failed_at"))
        .values_list("minute")
        .annotate(n=Count("*"))
        .order_by()
    )
    return Series("dead-lettered", _per_minute(rows, minutes), admin_list(DeadLetter), "last_failed_at")


def _heartbeats() -> tuple[list[dict], list[str]]:
    """Each worker's loops with the age of their last beat; and the loops messages need that no worker beats.
    Ages are from the clock of now, as `stuck_loops` reads them, whatever moment the rest of the page is for."""
    wedged = stuck_loops(within_s=SILENT_AFTER_S)
    now = timezone.now()
    rows = []
    beats = list(WorkerHeartbeat.objects.order_by("worker", "loop"))
    for beat in beats:
        age = (now - beat.beat_at).total_seconds()
        rows.append(
            {
                "worker": beat.worker,
                "loop": beat.loop,
                "started_at": beat.started_at,
                "beat_at": beat.beat_at,
                "age_s": age,
                "silent": age > SILENT_AFTER_S,
                "wedged": beat.loop in wedged.get(beat.worker, []),
                "url": admin_list(WorkerHeartbeat, worker=beat.worker),
            }
        )
    alive = {beat.loop for beat, row in zip(beats, rows, strict=True) if not row["silent"]}
    return rows, sorted(required_loops() - alive)


# What a staff user must be allowed to see for the overview to show: the lists its numbers open.
OVERVIEW_PERMISSIONS = ["saga.view_saga", "messaging.view_deadletter", "messaging.view_outboxmessage"]


def overview_index(request, extra_context=None):
    """The admin's index with the overview above the list of apps; the plain index for a staff user who may
    not see the sagas and the messages."""
    if not request.user.has_perms(OVERVIEW_PERMISSIONS):
        return admin.site.index(request, extra_context=extra_context)
    context = {"overview": overview(), "window_hours": WINDOW.total_seconds() / 3600, **(extra_context or {})}
    context["charts"] = context["overview"].charts()
    response = admin.site.index(request, extra_context=context)
    response.template_name = "config/admin/overview.html"  # extends the admin's own index
    return response
