"""A phase's figures, as the results record them, from its order records and the deployment's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cpu import cpu_figures, loadavg
from .records import FINAL_STATUSES, OrderRecord, Phase
from .stats import per_second, spread

if TYPE_CHECKING:
    from .deployments import Deployment
    from .polling import Poller


def phase_figures(
    phase: Phase, deployment: Deployment, poller: Poller, cpu: dict[str, float] | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """Outcomes, rates and latencies, the database's stamps (lags, hops) and CPU seconds (when measured)."""
    placed = [r for r in phase.records if r.order_id]
    finals = [r for r in placed if r.final_stamp is not None]
    figures = {
        "label": phase.label,
        **settings,
        **outcomes(phase.records),
        **timings(phase),
        "poll_requests": poller.requests,
        "poll_errors": poller.errors,
    }
    figures.update(database_figures(deployment, [r.order_id for r in placed]))
    if cpu is not None:
        figures.update(cpu_figures(cpu, sagas=len(finals), seconds=phase.ended - phase.started))
    figures["loadavg_start_end"] = [phase.loadavg_start, loadavg()]
    return figures


def outcomes(records: list[OrderRecord]) -> dict[str, Any]:
    """How many orders were posted, refused, and ended in each final status, and why those that failed did."""
    placed = [r for r in records if r.order_id]
    statuses = {s: sum(1 for r in placed if r.status == s) for s in sorted(FINAL_STATUSES)}
    reasons: dict[str, int] = {}
    for r in placed:
        if r.status in {"FAILED", "CANCELLED"}:
            reasons[r.failure_reason or "?"] = reasons.get(r.failure_reason or "?", 0) + 1
    return {
        "orders_posted": len(records),
        "post_errors": sum(1 for r in records if r.error),
        "post_error_examples": sorted({r.error for r in records if r.error})[:3],
        "completed": statuses["COMPLETED"],
        "failed": statuses["FAILED"],
        "cancelled": statuses["CANCELLED"],
        "not_final": len(placed) - sum(1 for r in placed if r.final_stamp is not None),
        "failure_reasons": reasons,
    }


def timings(phase: Phase) -> dict[str, Any]:
    """The rate of finished sagas over the window from the first POST to the last final stamp, and latencies.

    A final stamp is the server's; POST times are the client's. The window falls back to the phase's own
    start and end when no order was posted or none became final.
    """
    placed = [r for r in phase.records if r.order_id]
    finals = [r for r in placed if r.final_stamp is not None]
    first_post = min((r.post_start for r in phase.records), default=phase.started)
    last_final = max((r.final_stamp for r in finals if r.final_stamp is not None), default=phase.ended)
    window = max(last_final - first_post, 1e-9)
    return {
        "window_s": round(window, 3),
        "wall_s": round(phase.ended - phase.started, 3),
        "sagas_per_s": per_second(len(finals), window),
        "post_latency_ms": spread([(r.post_end - r.post_start) * 1000 for r in placed]),
        "post_to_final_ms": spread(
            [(r.final_stamp - r.post_start) * 1000 for r in finals if r.final_stamp is not None]
        ),
        "post_to_final_observed_ms": spread(
            [(r.observed_final - r.post_start) * 1000 for r in placed if r.observed_final is not None]
        ),
    }


def database_figures(deployment: Deployment, order_ids: list[str]) -> dict[str, Any]:
    """Where the time goes message by message, and the relay lag, when the deployment's database is readable."""
    figures: dict[str, Any] = {}
    lags = deployment.relay_lags_ms(order_ids)
    hops = deployment.hops_ms(order_ids)
    if hops:
        figures["hops_ms"] = hops
    if lags is not None:
        key = "dispatch_lag_ms" if deployment.name == "embedded" else "relay_lag_ms"
        figures[key] = spread(lags[0])
        figures["outbox_rows_unpublished"] = lags[1]
    return figures
