"""`--system both`: the options it takes, and the ratios it draws from alternating runs."""

from __future__ import annotations

import pytest

from scripts.benchmark.cli import DBOS_PHASES, parse_args
from scripts.benchmark.comparison import comparison_figures, comparison_lines


def run_of(**rates: float | None) -> dict:
    return {"phases": {name: {"sagas_per_s": rate} for name, rate in rates.items()}}


def test_each_round_is_a_ratio_of_its_own_pair_and_the_median_is_over_the_rounds():
    rounds = [
        {"sagaflow": run_of(burst=60.0, api_polling=50.0), "dbos": run_of(burst=30.0, api_polling=25.0)},
        {"sagaflow": run_of(burst=45.0, api_polling=40.0), "dbos": run_of(burst=15.0, api_polling=40.0)},
        {"sagaflow": run_of(burst=80.0, api_polling=30.0), "dbos": run_of(burst=20.0, api_polling=20.0)},
    ]

    figures = comparison_figures(rounds)

    assert [p["ratio"] for p in figures["burst"]["rounds"]] == [2.0, 3.0, 4.0]
    assert figures["burst"]["median_ratio"] == 3.0
    assert [p["ratio"] for p in figures["api_polling"]["rounds"]] == [2.0, 1.0, 1.5]
    assert figures["api_polling"]["median_ratio"] == 1.5


def test_a_phase_one_system_did_not_measure_has_no_ratio():
    rounds = [{"sagaflow": run_of(burst=60.0, flash_sale=10.0), "dbos": run_of(burst=None)}]

    figures = comparison_figures(rounds)

    assert set(figures) == {"burst"}
    assert figures["burst"]["rounds"] == [{"sagaflow_sagas_per_s": 60.0, "dbos_sagas_per_s": None, "ratio": None}]
    assert figures["burst"]["median_ratio"] is None
    assert "burst" in "\n".join(comparison_lines(figures))


@pytest.mark.parametrize("system", ["dbos", "both"])
def test_the_alternative_runs_only_the_phases_it_implements(system, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--system", system, "--phases", "burst,flash_sale"])

    assert "runs only the phases" in capsys.readouterr().err
    assert parse_args(["--system", system, "--phases", "burst"]).phases == ["burst"]
    assert "flash_sale" not in DBOS_PHASES


def test_the_alternative_is_started_by_the_bench_never_given_by_url(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--system", "dbos", "--url", "http://127.0.0.1:8000"])

    assert "takes no --url" in capsys.readouterr().err
