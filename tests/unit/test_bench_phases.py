"""The bench's phases as the options ask for them, its verdicts on the targets, and how it prints figures."""

from __future__ import annotations

import pytest

from scripts.benchmark import report
from scripts.benchmark.cli import parse_args
from scripts.benchmark.phases import EMBEDDED_PHASES, PRODUCTION_PHASES, wanted
from scripts.benchmark.targets import TARGETS, evaluate_targets

ALL_PHASES = (*PRODUCTION_PHASES, *EMBEDDED_PHASES)


def names(kinds) -> list[str]:
    return [kind.name for kind in kinds]


def test_the_defaults_ask_for_every_phase_in_order():
    args = parse_args([])

    assert names(wanted(PRODUCTION_PHASES, args)) == [
        "throughput",
        "steady",
        "burst",
        "api_polling",
        "burst_waits",
        "api_waits",
        "flash_sale",
    ]
    assert names(wanted(EMBEDDED_PHASES, args)) == ["embedded"]


def test_phases_picks_the_phases_named_and_keeps_their_order():
    args = parse_args(["--phases", "flash_sale,burst", "--skip-embedded"])

    assert names(wanted(PRODUCTION_PHASES, args)) == ["burst", "flash_sale"]
    assert names(wanted(EMBEDDED_PHASES, args)) == []


def test_phases_refuses_a_phase_that_does_not_exist(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--phases", "throughput,brust"])

    assert "no phase brust" in capsys.readouterr().err


def test_the_flash_sale_has_scarce_stock_and_its_own_customers():
    args = parse_args(["--flash-orders", "2000", "--flash-stock", "50", "--flash-customers", "400"])
    flash = next(kind for kind in PRODUCTION_PHASES if kind.name == "flash_sale")
    burst = next(kind for kind in PRODUCTION_PHASES if kind.name == "burst")

    assert (flash.orders(args), flash.stock(args), flash.customers(args)) == (2000, 50, 400)
    assert burst.stock(args) == args.burst_orders + 100  # every other phase has stock for each order


@pytest.mark.parametrize(
    "argv, skipped",
    [
        (["--orders", "0"], "throughput"),
        (["--steady-seconds", "0"], "steady"),
        (["--steady-rate", "10", "--steady-seconds", "0.05"], "steady"),  # half an order is none
        (["--embedded-orders", "0"], "embedded"),
    ],
)
def test_a_phase_of_no_orders_is_skipped(argv, skipped):
    args = parse_args(argv)

    assert skipped not in names(wanted(ALL_PHASES, args))


def test_the_steady_phase_places_rate_times_seconds_orders_and_says_so():
    args = parse_args(["--steady-rate", "12.5", "--steady-seconds", "4"])
    steady = next(kind for kind in PRODUCTION_PHASES if kind.name == "steady")

    assert steady.orders(args) == 50
    assert steady.settings(args) == {"orders": 50, "rate_per_s": 12.5, "seconds": 4.0}
    assert steady.label(args) == "steady: 12.5 orders/s for 4s"


def test_every_phase_has_its_own_name_and_records_the_orders_it_places():
    args = parse_args(
        [
            *("--orders", "7", "--steady-rate", "3", "--steady-seconds", "2", "--embedded-orders", "5"),
            *("--burst-orders", "8", "--api-poll-orders", "9", "--flash-orders", "10"),
        ]
    )

    assert len(set(names(ALL_PHASES))) == len(ALL_PHASES)
    assert {kind.name: kind.settings(args)["orders"] for kind in ALL_PHASES} == {
        "throughput": 7,
        "steady": 6,
        "burst": 8,
        "api_polling": 9,
        "burst_waits": 8,  # the burst's size and clients, its outcomes awaited
        "api_waits": 9,
        "flash_sale": 10,
        "embedded": 5,
    }


def test_every_target_names_a_phase_that_exists_or_the_runs_ratios():
    assert {phase for phase, *_ in TARGETS} <= {*names(ALL_PHASES), "ratios"}


def figures(**overrides) -> dict:
    base = {"orders": 1000, "concurrency": 20, "sagas_per_s": 160.0, "relay_lag_ms": {"p50": 3.0, "p99": 12.0, "n": 10}}
    return {**base, **overrides}


def verdict(verdicts: list[dict], target: str) -> dict:
    return next(v for v in verdicts if v["target"] == target)


def test_a_target_is_met_missed_or_not_measured():
    verdicts = evaluate_targets({"throughput": figures(relay_lag_ms={"p50": 3.0, "p99": 25.0, "n": 10})})

    assert verdict(verdicts, "completed sagas/s") == {
        "target": "completed sagas/s",
        "bound": ">= 150",
        "measured": 160.0,
        "met": True,
        "settings_as_in_target": True,
    }
    assert verdict(verdicts, "relay lag p99, throughput phase (ms)")["met"] is False
    steady = verdict(verdicts, "steady POST-to-final p50 (ms)")
    assert (steady["measured"], steady["met"], steady["settings_as_in_target"]) == (None, None, None)


def test_a_target_measured_with_other_settings_says_so():
    verdicts = evaluate_targets({"throughput": figures(orders=200)})

    assert verdict(verdicts, "completed sagas/s")["settings_as_in_target"] is False


def test_a_bound_reached_exactly_is_met():
    verdicts = evaluate_targets({"throughput": figures(sagas_per_s=150, relay_lag_ms={"p99": 20, "n": 1})})

    assert verdict(verdicts, "completed sagas/s")["met"] is True
    assert verdict(verdicts, "relay lag p99, throughput phase (ms)")["met"] is True


def test_milliseconds_print_whole_from_ten_on_with_one_decimal_below_and_a_dash_for_nothing():
    spread = {"p50": 7.06, "p90": 10.4, "p99": 250.6, "n": 3}

    assert report.ms(spread, "p50", "p90", "p99") == "7.1/10/251"
    assert report.ms({"p50": None, "n": 0}, "p50") == "-"
    assert report.ms(None, "p50") == "-"


def test_a_target_line_says_what_was_measured_and_the_verdict():
    lines = report.target_lines(evaluate_targets({"throughput": figures(orders=200, sagas_per_s=15.1)}))

    assert lines[0] == "targets:"
    assert lines[1] == (
        "  completed sagas/s                         >= 150  measured     15.1  MISSED "
        "(run with other settings than the target's)"
    )
    assert lines[2].endswith("not measured")
