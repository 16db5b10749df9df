"""The saga's figures on the web's /metrics, read from the database at each scrape: registered from
SagaConfig.ready() with messaging's collector (messaging/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from saga import registry
from saga.selectors import saga_counts
from saga.services import stuck_sagas


def saga_families() -> Iterator[Metric]:
    """Sagas started, completed, failed by reason and cancelled; sagas in each state now and overdue."""
    definition = registry.definition()
    rows = [(state, reason, n) for (state, reason), n in saga_counts().items()]
    started = CounterMetricFamily("sagaflow_sagas_started", "Sagas started (one per order placed).")
    started.add_metric([], sum(n for _, _, n in rows))
    completed = CounterMetricFamily("sagaflow_sagas_completed", "Sagas that completed.")
    completed.add_metric([], sum(n for state, _, n in rows if state == definition.completed_state))
    failed = CounterMetricFamily("sagaflow_sagas_failed", "Sagas that failed, by reason.", labels=["reason"])
    cancelled = CounterMetricFamily("sagaflow_sagas_cancelled", "Sagas cancelled on request.")
    cancelled.add_metric([], sum(n for state, _, n in rows if state == definition.cancelled_state))
    by_state = GaugeMetricFamily("sagaflow_sagas", "Sagas in each state now.", labels=["state"])
    counts = dict.fromkeys(definition.states, 0)
    for state, reason, n in rows:
        counts[state] = counts.get(state, 0) + n
        if state == definition.failed_state:
            failed.add_metric([reason or "unknown"], n)
    for state, n in sorted(counts.items()):
        by_state.add_metric([state], n)
    overdue = GaugeMetricFamily(
        "sagaflow_sagas_overdue",
        "Sagas past the deadline of their state (any state, "
        "compensating included), or flagged after their last compensation attempt.",
    )
    overdue.add_metric([], stuck_sagas().count())
    yield from (started, completed, failed, cancelled, by_state, overdue)
