"""The figures the product is held to, and whether a run met them."""

from __future__ import annotations

from typing import Any

# (phase, figure, percentile, comparison, bound, what, the phase settings the issue states the target for)
TARGETS = [
    ("throughput", "sagas_per_s", None, ">=", 150, "completed sagas/s", {"orders": 1000, "concurrency": 20}),
    ("steady", "post_to_final_ms", "p50", "<=", 50, "steady POST-to-final p50 (ms)", {"rate_per_s": 10}),
    ("steady", "post_to_final_ms", "p99", "<=", 250, "steady POST-to-final p99 (ms)", {"rate_per_s": 10}),
    ("throughput", "relay_lag_ms", "p99", "<=", 20, "relay lag p99, throughput phase (ms)", {}),
    ("steady", "relay_lag_ms", "p99", "<=", 20, "relay lag p99, steady phase (ms)", {}),
    ("embedded", "post_to_final_ms", "p50", "<=", 100, "embedded POST-to-final p50 (ms)", {}),
    ("embedded", "post_to_final_ms", "p99", "<=", 100, "embedded POST-to-final p99 (ms)", {}),
    # Ratios of two figures of the same run (figures.run_ratios), which hold from machine to machine.
    ("ratios", "status_read_over_health", None, "<=", 2, "GET /api/orders/{id} web CPU / health", {}),
    ("ratios", "post_over_health", None, "<=", 4, "POST /api/orders web CPU / health", {}),
    ("ratios", "throughput_saga_cpu_over_raw_parts", None, "<=", 2.5, "saga CPU / raw parts' share", {}),
    ("ratios", "burst_over_closed_loop", None, ">=", 1.0, "burst sagas/s / closed loop's", {}),
    ("ratios", "burst_waits_over_closed_loop", None, ">=", 1.0, "burst, outcomes awaited / closed loop", {}),
    ("flash_sale", "invariants", "held", "==", True, "flash sale invariants held", {}),
]


def compare(value: Any, op: str, bound: Any) -> bool:
    if op == "==":
        return value == bound
    return value >= bound if op == ">=" else value <= bound


def evaluate_targets(phases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A verdict for each target; `phases` holds the phases' figures, and the run's ratios under "ratios"."""
    verdicts = []
    for phase, key, sub, op, bound, what, conditions in TARGETS:
        figures = phases.get(phase, {})
        value = figures.get(key)
        if isinstance(value, dict):
            value = value.get(sub)
        met = None if value is None else compare(value, op, bound)
        as_stated = all(figures.get(k) == v for k, v in conditions.items())
        verdicts.append(
            {
                "target": what,
                "bound": f"{op} {bound}",
                "measured": value,
                "met": met,
                "settings_as_in_target": as_stated if figures else None,
            }
        )
    return verdicts
