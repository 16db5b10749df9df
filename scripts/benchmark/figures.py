"""A phase's figures, as the results record them, from its order records and the deployment's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cpu import cpu_figures, loadavg
from .records import FINAL_STATUSES, OrderRecord, Phase
from .stats import per_second, percentile, spread

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

    POST-to-final is each order's own: its `updated_at` when final less its `created_at`, both the server's.
    POST latency and the window's start are the client's clock. The window falls back to the phase's own
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
            [
                (r.final_stamp - r.created_stamp) * 1000
                for r in finals
                if r.final_stamp is not None and r.created_stamp is not None
            ]
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


def run_ratios(phases: dict[str, dict[str, Any]], raw_parts: dict[str, float] | None) -> dict[str, Any]:
    """The figures of a run that hold from machine to machine: ratios of two figures measured in the same run.

    - `<phase>_saga_cpu_over_raw_parts`: all CPU per saga over the saga's share of the raw parts alone;
    - `<phase>_over_closed_loop`: a phase's sagas/s over the closed loop's (the throughput phase);
    - `status_read_over_health`, `post_over_health`: web CPU of one request over /health/live's, the median
      over the phases that measured it.
    """
    ratios: dict[str, Any] = {}
    share = (raw_parts or {}).get("one_sagas_share_ms")
    for name, f in phases.items():
        if share and f.get("cpu_ms_per_saga_total"):
            ratios[f"{name}_saga_cpu_over_raw_parts"] = round(f["cpu_ms_per_saga_total"] / share, 2)
    closed_loop = phases.get("throughput", {}).get("sagas_per_s")
    for name in ("burst", "api_polling", "burst_waits", "api_waits", "flash_sale"):
        rate = phases.get(name, {}).get("sagas_per_s")
        if closed_loop and rate is not None:
            ratios[f"{name}_over_closed_loop"] = round(rate / closed_loop, 2)
    for key, kind in (("status_read_over_health", "GET /api/orders/{id}"), ("post_over_health", "POST /api/orders")):
        measured = [
            f["request_cpu"]["ratio_to_health"][kind]
            for f in phases.values()
            if f.get("request_cpu") and f["request_cpu"]["ratio_to_health"].get(kind) is not None
        ]
        if measured:
            ratios[key] = round(percentile(measured, 0.5) or 0.0, 2)
    return ratios
