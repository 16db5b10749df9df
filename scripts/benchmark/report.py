"""What the bench prints: a line per phase as it ends, and the summary of the run; and the results file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .console import say
from .raw_parts import SAGA_DELIVERIES, SAGA_PUBLISHES, SAGA_TRANSACTIONS
from .records import SAGA_PATH


def ms(spread_: dict[str, Any] | None, *keys: str) -> str:
    """The spread's figures at `keys`, slash-separated: whole milliseconds from 10 on, one decimal below."""
    if not spread_ or spread_.get("n", 0) == 0:
        return "-"
    return "/".join(f"{spread_[k]:.0f}" if spread_[k] >= 10 else f"{spread_[k]:.1f}" for k in keys)


def hop_line(stages: dict[str, dict[str, Any]]) -> str:
    return "+".join(ms(stages[stage], "p50") for stage in ("relay", "queue", "handler"))


def summary_line(name: str, f: dict[str, Any]) -> str:
    lag = f.get("relay_lag_ms") or f.get("dispatch_lag_ms")
    return (
        f"  [{name}] done: {f['completed']} completed, {f['failed']} failed, {f['cancelled']} cancelled, "
        f"{f['not_final']} not final, {f['post_errors']} POST errors; {f['sagas_per_s']} sagas/s; "
        f"POST p50/p90/p99 {ms(f['post_latency_ms'], 'p50', 'p90', 'p99')} ms; "
        f"POST-to-final {ms(f['post_to_final_ms'], 'p50', 'p90', 'p99')} ms "
        f"(observed {ms(f['post_to_final_observed_ms'], 'p50', 'p90', 'p99')}); "
        f"lag p50/p99 {ms(lag, 'p50', 'p99')} ms"
    )


def request_cpu_line(name: str, probe: dict[str, Any]) -> str:
    per_request, ratios = probe["ms_per_request"], probe["ratio_to_health"]
    return f"  [{name}] web CPU per request, sequential on one thread ({probe['requests_each']} each): " + ", ".join(
        f"{kind} {value:.2f} ms" + (f" ({ratios[kind]}x)" if ratios.get(kind) is not None else "")
        for kind, value in per_request.items()
        if value is not None
    )


def invariant_lines(phases: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, f in phases.items():
        if "invariants" not in f:
            continue
        checked = f["invariants"]
        counts = checked["counts"]
        lines.append(
            f"{name} invariants {'held' if checked['held'] else 'BROKEN'}: {counts['units_sold']} units sold of "
            f"{f.get('stock')}, {counts['completed']} completed, {counts['refunded']} refunded of "
            f"{counts['orders'] - counts['completed']} not completed, on_hand left {counts['on_hand_left']}, "
            f"reserved left {counts['reserved_left']}, timeouts {counts['timeouts']}"
        )
        lines.extend(f"  {what}: {'yes' if held else 'NO'}" for what, held in checked["invariants"].items())
    return lines


def ratio_lines(ratios: dict[str, Any]) -> list[str]:
    if not ratios:
        return []
    shown = ", ".join(f"{key} {value}" for key, value in ratios.items())
    return [f"ratios of this run (they hold from machine to machine): {shown}"]


def report(results: dict[str, Any]) -> None:
    """Prints the summary of the run: a table of the phases, CPU, where the time goes, raw parts, the single
    requests' CPU, the flash sale's invariants, the ratios and the targets."""
    system = results["options"].get("system", "sagaflow")
    say(f"\n== {'sagaflow' if system == 'sagaflow' else 'DBOS Transact alternative'} benchmark ==")
    host = results["host"]
    say(
        f"{host['cpus']} CPUs; load average {host['loadavg_before']} before, {host['loadavg_after']} after. "
        "Other work on this machine (tests, builds) makes every figure noisy."
    )
    phases = results["phases"]
    for line in [
        *phase_table(phases),
        *cpu_lines(phases, (results.get("raw_parts") or {}).get("one_sagas_share_ms")),
        *hops_lines(phases),
        *raw_parts_lines(results.get("raw_parts")),
        *[request_cpu_line(name, f["request_cpu"]) for name, f in phases.items() if f.get("request_cpu")],
        *invariant_lines(phases),
        *ratio_lines(results.get("ratios", {})),
        # The targets are the product's own.
        *(target_lines(results["targets"]) if system == "sagaflow" else []),
    ]:
        say(line)


def phase_table(phases: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"{'phase':<12}{'done/failed':>12}{'sagas/s':>9}{'POST p50/90/99':>17}{'to final p50/90/99':>21}"
        f"{'observed p50/99':>17}{'lag p50/99':>12}"
    ]
    for name, f in phases.items():
        lag = f.get("relay_lag_ms") or f.get("dispatch_lag_ms")
        lines.append(
            f"{name:<12}{f['completed']:>6}/{f['failed'] + f['cancelled']:<5}{f['sagas_per_s']:>9}"
            f"{ms(f['post_latency_ms'], 'p50', 'p90', 'p99'):>17}"
            f"{ms(f['post_to_final_ms'], 'p50', 'p90', 'p99'):>21}"
            f"{ms(f['post_to_final_observed_ms'], 'p50', 'p99'):>17}{ms(lag, 'p50', 'p99'):>12}"
        )
    lines.append(
        "(ms; 'to final' = the order's updated_at when final minus its created_at; 'observed' = when the client "
        "or the poller saw it, from the POST's start; "
        "embedded lag = outbox row to delivered)"
    )
    return lines


def cpu_lines(phases: dict[str, dict[str, Any]], raw_share_ms: float | None = None) -> list[str]:
    """A line for each phase whose CPU was measured, with the raw parts' share of a saga beside the total."""
    return [
        f"CPU ms per saga, {name}: "
        + ", ".join(f"{kind} {seconds * 1000:.1f}" for kind, seconds in f["cpu_s_per_saga"].items())
        + f"; in all {f.get('cpu_ms_per_saga_total', 0):.1f}"
        + (
            f" against the raw parts' {raw_share_ms:.1f} ({f.get('cpu_ms_per_saga_total', 0) / raw_share_ms:.1f}x)"
            if raw_share_ms
            else ""
        )
        + f"  (poller requests: {f['poll_requests']}); the machine was busy {f['machine_busy_cores']} of "
        f"{os.cpu_count()} cores, {f['other_busy_cores']} of them with work other than this benchmark"
        for name, f in phases.items()
        if "cpu_s_per_saga" in f
    ]


def hops_lines(phases: dict[str, dict[str, Any]]) -> list[str]:
    """Two lines for each phase whose database stamps were read: the saga's messages in the order sent."""
    lines = []
    for name, hops in ((name, f["hops_ms"]) for name, f in phases.items() if "hops_ms" in f):
        lines.append(f"where the time goes, {name}, p50 ms (relay + queue + handler, for each message of a saga):")
        lines.append("  " + "  ".join(f"{key} {hop_line(hops[key])}" for key in SAGA_PATH if key in hops))
    return lines


def raw_parts_lines(raw: dict[str, float] | None) -> list[str]:
    if not raw:
        return []
    return [
        f"raw parts, alone on this machine before the phases: PostgreSQL "
        f"{raw['pg_two_row_transactions_per_s']:.0f} two-row transactions/s; RabbitMQ "
        f"{raw['amqp_confirmed_publishes_one_at_a_time_per_s']:.0f} confirmed publishes/s one at a time, "
        f"{raw['amqp_confirmed_publishes_windowed_per_s']:.0f}/s with a window; kombu "
        f"{raw['kombu_consumed_per_s']:.0f} consumed/s. A saga's share of them ({SAGA_TRANSACTIONS} transactions, "
        f"{SAGA_PUBLISHES} publishes, {SAGA_DELIVERIES} deliveries; no HTTP): {raw['one_sagas_share_ms']:.1f} ms, "
        "single-threaded"
    ]


def target_lines(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["targets:"]
    for v in verdicts:
        mark = {True: "met", False: "MISSED", None: "not measured"}[v["met"]]
        if v["settings_as_in_target"] is False:
            mark += " (run with other settings than the target's)"
        lines.append(f"  {v['target']:<40} {v['bound']:>7}  measured {v['measured']!s:>8}  {mark}")
    return lines


def write_results(results: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(results, indent=2) + "\n")
    say(f"results written to {path}")
