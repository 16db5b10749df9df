"""The bench's figures of the loads users bring: the flash sale's verdicts, the single requests' CPU and the
run's ratios, and the targets they are held to."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest

from scripts.benchmark import figures, flash_sale, load, request_cpu
from scripts.benchmark.records import OrderRecord
from scripts.benchmark.targets import evaluate_targets


def sale(**overrides) -> dict:
    """The counts of a flash sale of 1,000 orders for 100 units at 1.00 that went right."""
    counts = {
        "on_hand_left": 0,
        "reserved_left": 0,
        "orders": 1000,
        "completed": 100,
        "units_sold": 100,
        "pending": 0,
        "refunded": 900,
        "charged_but_not_completed": 0,
        "failed_for_another_reason": 0,
        "timeouts": 0,
        "money_taken": Decimal("100.00"),
    }
    return {**counts, **overrides}


def broken(counts: dict, stock: int = 100) -> list[str]:
    verdict = flash_sale.judge(counts, stock=stock, price=Decimal("1.00"))
    return sorted(what for what, held in verdict["invariants"].items() if not held)


def test_a_flash_sale_that_sold_exactly_its_stock_and_refunded_the_rest_holds():
    verdict = flash_sale.judge(sale(), stock=100, price=Decimal("1.00"))

    assert verdict["held"] is True
    assert verdict["counts"]["money_taken"] == "100.00"  # as the results file can hold it


@pytest.mark.parametrize(
    "overrides, expected",
    [
        # One unit too many left the shelf: the database would refuse it, but the bench says so if not.
        (
            {"units_sold": 101, "completed": 101, "on_hand_left": -1, "refunded": 899, "money_taken": 101},
            ["exactly the stock sold", "no oversell"],
        ),
        (
            {"units_sold": 99, "completed": 99, "on_hand_left": 1, "refunded": 901, "money_taken": 99},
            ["exactly the stock sold"],
        ),
        ({"reserved_left": 2}, ["no stock left reserved"]),
        ({"pending": 3, "refunded": 897}, ["every order final", "every other order refunded"]),
        ({"charged_but_not_completed": 1, "refunded": 899}, ["every other order refunded"]),
        ({"failed_for_another_reason": 4}, ["every other order failed for want of stock"]),
        ({"money_taken": Decimal("100.01")}, ["the money taken is the price of what was sold"]),
        ({"timeouts": 1}, ["no order waited past its deadline"]),
    ],
)
def test_each_broken_invariant_is_named(overrides, expected):
    assert broken(sale(**overrides)) == sorted(expected)


def test_a_sale_of_fewer_orders_than_units_sells_one_unit_an_order_and_leaves_the_rest():
    counts = sale(orders=40, completed=40, units_sold=40, on_hand_left=60, refunded=0, money_taken=Decimal("40.00"))

    assert broken(counts) == []


def test_a_single_requests_figure_is_its_median_over_the_rounds_and_its_ratio_to_health_in_the_same_round():
    per_round = {
        request_cpu.HEALTH: [1.0, 1.2, 5.0],  # one round disturbed: the median is not moved by it
        request_cpu.STATUS_READ: [2.0, 2.5, 2.4],
        request_cpu.POST: [4.8, 30.0, 4.4],
    }

    result = request_cpu.request_cpu_figures(per_round, requests_each=300)

    assert result["ms_per_request"] == {request_cpu.HEALTH: 1.2, request_cpu.STATUS_READ: 2.4, request_cpu.POST: 4.8}
    # Ratios within each round (2.0, 2.08, 0.48; 4.8, 25, 0.88), then their median.
    assert result["ratio_to_health"] == {request_cpu.STATUS_READ: 2.0, request_cpu.POST: 4.8}
    assert result["requests_each"] == 300


def probe(read: float, post: float) -> dict:
    return {"ratio_to_health": {request_cpu.STATUS_READ: read, request_cpu.POST: post}}


def test_the_runs_ratios_set_figures_of_one_run_against_each_other():
    phases = {
        "throughput": {"sagas_per_s": 30.0, "cpu_ms_per_saga_total": 50.0, "request_cpu": probe(2.0, 4.0)},
        "burst": {"sagas_per_s": 27.0, "cpu_ms_per_saga_total": 55.0, "request_cpu": probe(3.0, 5.0)},
        "api_polling": {"sagas_per_s": 33.0, "request_cpu": probe(1.0, 3.0)},
    }

    ratios = figures.run_ratios(phases, {"one_sagas_share_ms": 10.0})

    assert ratios == {
        "throughput_saga_cpu_over_raw_parts": 5.0,
        "burst_saga_cpu_over_raw_parts": 5.5,
        "burst_over_closed_loop": 0.9,
        "api_polling_over_closed_loop": 1.1,
        "status_read_over_health": 2.0,
        "post_over_health": 4.0,
    }


def test_without_raw_parts_or_a_closed_loop_those_ratios_are_left_out():
    assert figures.run_ratios({"burst": {"sagas_per_s": 20.0, "cpu_ms_per_saga_total": 40.0}}, None) == {}


def verdicts(phases: dict) -> dict[str, bool | None]:
    return {v["target"]: v["met"] for v in evaluate_targets(phases)}


def test_the_ratios_and_the_flash_sale_are_held_to_their_targets():
    ratios = {"status_read_over_health": 2.0, "post_over_health": 4.1, "burst_over_closed_loop": 0.88}
    held = verdicts({"ratios": ratios, "flash_sale": {"invariants": {"held": False}}})

    assert held["GET /api/orders/{id} web CPU / health"] is True  # at most 2x: 2.0 is within
    assert held["POST /api/orders web CPU / health"] is False
    assert held["burst sagas/s / closed loop's"] is False
    assert held["flash sale invariants held"] is False
    assert held["saga CPU / raw parts' share"] is None  # not measured


class ScriptedApi:
    """Answers GET /api/orders/{id} from a script of statuses, one per question, as the product would."""

    def __init__(self, statuses: dict[str, list[str]]):
        self.statuses, self.asked = statuses, []

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        order_id = path.rsplit("/", 1)[1]
        self.asked.append(order_id)
        script = self.statuses[order_id]
        status = script.pop(0) if len(script) > 1 else script[0]
        answer = {
            "id": order_id,
            "status": status,
            "failure_reason": "out_of_stock" if status == "FAILED" else None,
            "created_at": "2026-12-02T01:00:00.100000Z",
            "updated_at": "2026-12-02T01:00:02.600000Z",
        }
        return 200, json.dumps(answer).encode()


def test_a_client_reads_each_order_until_it_is_final_and_keeps_the_orders_own_stamps():
    api = ScriptedApi({"a": ["PENDING", "PENDING", "COMPLETED"], "b": ["FAILED"]})
    records = [OrderRecord(customer_id="c", order_id="a"), OrderRecord(customer_id="c", order_id="b")]

    load.await_over_api(api, records, interval=0.0, timeout=5.0, stop=threading.Event())

    assert [(r.status, r.done.is_set()) for r in records] == [("COMPLETED", True), ("FAILED", True)]
    assert records[1].failure_reason == "out_of_stock"
    assert records[0].final_stamp == load.stamp("2026-12-02T01:00:02.600000Z")
    assert api.asked == ["a", "b", "a", "a"]  # a final order is not asked again


def test_an_order_never_final_is_given_up_at_the_timeout_and_left_not_final():
    api = ScriptedApi({"a": ["PENDING"]})
    record = OrderRecord(customer_id="c", order_id="a")

    load.await_over_api(api, [record], interval=0.01, timeout=0.05, stop=threading.Event())

    assert not record.done.is_set() and record.final_stamp is None


def test_the_clients_of_a_phase_take_each_order_number_once_and_stop_after_the_last():
    numbers, taken, lock = load.OrderNumbers(1000), [], threading.Lock()

    def client() -> None:
        while (index := numbers.take()) is not None:
            with lock:
                taken.append(index)

    load.join_all(load.start_threads(client, 8))

    assert sorted(taken) == list(range(1000))
    assert numbers.take() is None
