"""The bench's arithmetic: percentiles, spreads, rates, a phase's figures from its records, CPU per saga."""

from __future__ import annotations

import os
import random

import pytest

from scripts.benchmark import cpu, figures, raw_parts, stats
from scripts.benchmark.records import OrderRecord, Phase

# Percentiles and spreads.


def test_a_percentile_interpolates_between_the_closest_ranks():
    values = [40.0, 10.0, 30.0, 20.0]  # unsorted on purpose

    assert stats.percentile(values, 0.5) == 25.0
    assert stats.percentile(values, 0.0) == 10.0
    assert stats.percentile(values, 1.0) == 40.0
    assert stats.percentile(values, 0.9) == pytest.approx(37.0)


def test_the_p99_of_one_to_a_hundred_sits_just_above_99():
    values = [float(n) for n in range(1, 101)]
    random.shuffle(values)

    assert stats.percentile(values, 0.99) == pytest.approx(99.01)
    assert stats.percentile(values, 0.5) == pytest.approx(50.5)


def test_one_value_is_every_percentile_and_no_value_has_none():
    assert [stats.percentile([7.0], q) for q in (0.0, 0.5, 0.99, 1.0)] == [7.0] * 4
    assert stats.percentile([], 0.5) is None


def test_a_spread_gives_p50_p90_p99_and_max_rounded_to_two_decimals_and_the_count():
    spread = stats.spread([1.0, 2.0, 3.0, 4.0, 100.0 / 3])

    # p90 sits 0.6 of the way from 4 to 33.33..., p99 0.96 of the way.
    assert spread == {"p50": 3.0, "p90": 21.6, "p99": 32.16, "max": 33.33, "n": 5}


def test_the_spread_of_nothing_is_all_none_with_a_count_of_zero():
    assert stats.spread([]) == {"p50": None, "p90": None, "p99": None, "max": None, "n": 0}


def test_a_rate_is_per_second_to_one_decimal_and_a_window_of_no_length_is_no_error():
    assert stats.per_second(300, 2.0) == 150.0
    assert stats.per_second(1, 3.0) == 0.3
    assert stats.per_second(0, 0.0) == 0.0
    assert stats.per_second(1, 0.0) == 1e9


# A phase's figures from its records.


def record(
    post_start: float,
    *,
    post_ms: float = 10.0,
    created_after_ms: float = 0.0,
    final_after_ms: float | None = None,
    observed_after_ms: float | None = None,
    status: str = "",
    reason: str | None = None,
    error: str = "",
) -> OrderRecord:
    placed = not error
    return OrderRecord(
        customer_id="c",
        post_start=post_start,
        post_end=post_start + post_ms / 1000,
        error=error,
        order_id=f"order-{post_start}" if placed else "",
        status=status,
        failure_reason=reason,
        created_stamp=post_start + created_after_ms / 1000 if placed else None,
        final_stamp=None if final_after_ms is None else post_start + final_after_ms / 1000,
        observed_final=None if observed_after_ms is None else post_start + observed_after_ms / 1000,
    )


def phase_of(records: list[OrderRecord], started: float = 100.0, ended: float = 110.0) -> Phase:
    return Phase(
        name="throughput",
        label="t",
        sku="s",
        orders=len(records),
        customers=["c"],
        records=records,
        started=started,
        ended=ended,
    )


def test_the_rate_counts_final_sagas_from_the_first_post_to_the_last_final_stamp():
    phase = phase_of(
        [
            record(100.0, final_after_ms=500, status="COMPLETED"),
            record(101.0, final_after_ms=1000, status="COMPLETED"),
            record(101.5, status=""),
        ]
    )  # never final: not counted, and does not stretch the window

    timings = figures.timings(phase)

    assert timings["window_s"] == 2.0
    assert timings["sagas_per_s"] == 1.0
    assert timings["wall_s"] == 10.0


def test_latencies_are_the_posts_own_the_orders_own_stamps_and_the_pollers_from_the_post():
    phase = phase_of(
        [
            # created_at 5 ms after the client sent the POST: POST-to-final is the order's own, 45 ms.
            record(100.0, post_ms=20, created_after_ms=5, final_after_ms=50, observed_after_ms=55, status="COMPLETED"),
            record(100.1, post_ms=40, final_after_ms=150, observed_after_ms=160, status="FAILED"),
        ]
    )

    timings = figures.timings(phase)

    assert timings["post_latency_ms"]["p50"] == pytest.approx(30.0)
    assert timings["post_to_final_ms"] == {"p50": 97.5, "p90": 139.5, "p99": 148.95, "max": 150.0, "n": 2}
    assert timings["post_to_final_observed_ms"]["max"] == pytest.approx(160.0)


def test_a_refused_post_counts_as_a_post_error_and_in_no_latency():
    phase = phase_of([record(100.0, final_after_ms=50, status="COMPLETED"), record(100.2, error="HTTP 503: b''")])

    assert figures.timings(phase)["post_latency_ms"]["n"] == 1
    assert figures.outcomes(phase.records) == {
        "orders_posted": 2,
        "post_errors": 1,
        "post_error_examples": ["HTTP 503: b''"],
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "not_final": 0,
        "failure_reasons": {},
    }


def test_outcomes_count_each_final_status_and_the_reasons_of_those_that_did_not_complete():
    records = [
        record(100.0, final_after_ms=10, status="COMPLETED"),
        record(100.1, final_after_ms=10, status="FAILED", reason="insufficient_funds"),
        record(100.2, final_after_ms=10, status="FAILED", reason="insufficient_funds"),
        record(100.3, final_after_ms=10, status="CANCELLED", reason=None),
        record(100.4, status="PENDING"),
    ]

    outcome = figures.outcomes(records)

    assert (outcome["completed"], outcome["failed"], outcome["cancelled"], outcome["not_final"]) == (1, 2, 1, 1)
    assert outcome["failure_reasons"] == {"insufficient_funds": 2, "?": 1}


def test_a_phase_with_no_orders_falls_back_to_its_own_start_and_end():
    timings = figures.timings(phase_of([], started=100.0, ended=104.0))

    assert timings["window_s"] == 4.0
    assert timings["sagas_per_s"] == 0.0
    assert timings["post_to_final_ms"]["n"] == 0


# CPU accounting.


def test_cpu_seconds_per_saga_divide_each_kinds_seconds_by_the_sagas_that_finished():
    used = {"web": 2.0, "worker": 5.0, cpu.WHOLE_MACHINE: 16.0, cpu.SHARED_RABBITMQ: 1.0}

    result = cpu.cpu_figures(used, sagas=1000, seconds=10.0)

    assert result["cpu_s_per_saga"] == {"web": 0.002, "worker": 0.005, cpu.SHARED_RABBITMQ: 0.001}
    assert result["cpu_s"] == {"web": 2.0, "worker": 5.0, cpu.SHARED_RABBITMQ: 1.0}
    assert result["machine_busy_cores"] == 1.6
    # 16 s busy in all, 8 of them ours or the shared broker's: 8 s of other work over 10 s.
    assert result["other_busy_cores"] == 0.8


def test_no_finished_saga_gives_the_whole_cost_to_one_and_other_work_is_never_negative():
    used = {"web": 3.0, cpu.WHOLE_MACHINE: 2.0}

    result = cpu.cpu_figures(used, sagas=0, seconds=0.0)

    assert result["cpu_s_per_saga"] == {"web": 3.0}
    assert result["other_busy_cores"] == 0.0
    assert result["machine_busy_cores"] == 2e9


def test_the_cpu_used_between_samples_counts_a_process_born_in_between_from_its_start():
    hz = cpu.CLOCK_TICKS
    before = {"web": {10: 1 * hz, 11: 2 * hz}}
    after = {"web": {10: 3 * hz, 11: 2 * hz, 12: hz // 2}, "beat": {20: hz}}

    assert cpu.cpu_used_s(before, after) == {"web": pytest.approx(2.5), "beat": pytest.approx(1.0)}
    assert list(cpu.cpu_used_s(before, after)) == ["web", "beat"]


def test_a_process_tree_is_the_process_and_all_its_descendants_and_nothing_else():
    table = {1: (0, 5), 10: (1, 100), 11: (10, 7), 12: (11, 3), 20: (1, 50)}  # {pid: (ppid, ticks)}

    assert cpu.tree_ticks(10, table) == {10: 100, 11: 7, 12: 3}
    assert cpu.tree_ticks(99, table) == {}


def test_this_processs_own_times_are_read_from_proc():
    ppid, ticks = cpu.proc_times(os.getpid(), with_reaped_children=False)
    _, with_children = cpu.proc_times(os.getpid())

    assert ppid == os.getppid()
    assert 0 <= ticks <= with_children


# The raw parts.


def test_a_sagas_share_of_the_raw_parts_is_five_transactions_six_publishes_and_four_deliveries():
    rates = {
        "pg_two_row_transactions_per_s": 1000.0,
        "amqp_confirmed_publishes_windowed_per_s": 2000.0,
        "kombu_consumed_per_s": 5000.0,
    }

    assert raw_parts.saga_share_ms(rates) == pytest.approx(5.0 + 3.0 + 0.8)
