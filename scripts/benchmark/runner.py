"""Runs a phase: its own product and customers, the poller, the load, the progress lines, the CPU samples
before and after, the read-back of every order, the phase's invariants, the CPU of single requests, and the
phase's figures."""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time
from typing import Any

from .api import Api
from .console import say
from .cpu import cpu_used_s, loadavg
from .deployments import Deployment
from .figures import phase_figures
from .load import run_closed_loop
from .phases import PhaseKind
from .polling import Poller
from .records import FINAL_STATUSES, Phase
from .report import request_cpu_line, summary_line
from .request_cpu import measure_request_cpu

PRICE = "1.00"
BALANCE = "1000000.00"


def prepare_phase(
    api: Api, run_id: str, name: str, label: str, orders: int, customers: int, stock: int | None = None
) -> Phase:
    """The phase's own product, with `stock` units (enough for every order unless said), and its customers'
    accounts, through the API."""
    phase = Phase(
        name=name,
        label=label,
        sku=f"BENCH-{run_id}-{name}",
        orders=orders,
        customers=[f"bench-{run_id}-{name}-{i}" for i in range(min(customers, max(orders, 1)))],
        stock=orders + 100 if stock is None else stock,
        price=PRICE,
    )
    api.post("/api/products", {"sku": phase.sku, "name": f"bench {name}", "price": PRICE, "stock": phase.stock})
    for customer_id in phase.customers:
        api.post("/api/accounts", {"customer_id": customer_id, "balance": BALANCE})
    return phase


def run_phase(
    deployment: Deployment, api: Api, phase: Phase, kind: PhaseKind, args: argparse.Namespace, stop: threading.Event
) -> dict[str, Any]:
    """Measures one phase and prints its summary line; raises KeyboardInterrupt if the run was stopped."""
    poller = Poller(deployment.status_reader(api), args.poll_interval, stop)
    poller.start()
    deployment.settle()
    before = deployment.cpu_sample()
    phase.started, phase.loadavg_start = time.time(), loadavg()
    reporter = threading.Thread(target=progress, args=(phase, deployment, stop), daemon=True)
    reporter.start()
    kind.load(api, poller, phase, args, stop)
    wait_for_finals(phase, args.phase_timeout, stop)
    phase.ended = time.time()
    deployment.settle()
    after = deployment.cpu_sample()
    poller.close()
    if phase.failure:
        raise RuntimeError(phase.failure)
    if stop.is_set():
        raise KeyboardInterrupt
    collect_finals(api, phase)
    cpu = cpu_used_s(before, after) if before is not None and after is not None else None
    figures = phase_figures(phase, deployment, poller, cpu, kind.settings(args))
    invariants = kind.invariants(deployment, phase)
    if invariants is not None:
        figures["invariants"] = invariants
    say(summary_line(phase.name, figures))
    probe = measure_single_requests(deployment, api, phase, args, stop)
    if probe is not None:
        figures["request_cpu"] = probe
        say(request_cpu_line(phase.name, probe))
    return figures


def measure_single_requests(
    deployment: Deployment, api: Api, phase: Phase, args: argparse.Namespace, stop: threading.Event
) -> dict[str, Any] | None:
    """The web CPU of a status read, of a POST and of /health/live, on the phase's last order and a product
    of its own (a flash sale's stock is gone), once the phase's messages have drained."""
    placed = [r for r in phase.records if r.order_id]
    if not placed or args.request_cpu_requests <= 0:
        return None
    sku, customer_id = f"{phase.sku}-probe", f"{phase.customers[0]}-probe"
    stock = args.request_cpu_requests * 2
    api.post("/api/products", {"sku": sku, "name": "bench probe", "price": PRICE, "stock": stock})
    api.post("/api/accounts", {"customer_id": customer_id, "balance": BALANCE})
    figures = measure_request_cpu(
        deployment,
        api,
        order_id=placed[-1].order_id,
        customer_id=customer_id,
        sku=sku,
        requests=args.request_cpu_requests,
        rounds=args.request_cpu_rounds,
        stop=stop,
    )
    deployment.settle()
    return figures


def wait_for_finals(phase: Phase, timeout: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    for record in list(phase.records):
        while record.order_id and not record.done.wait(0.2):
            if stop.is_set() or time.monotonic() > deadline:
                return


def progress(phase: Phase, deployment: Deployment, stop: threading.Event) -> None:
    """Prints a line every two seconds until the phase ends; stops the run if a process died."""
    while not stop.wait(2.0):
        if phase.ended:
            return
        records = list(phase.records)
        finals = sum(1 for r in records if r.done.is_set())
        failed = sum(1 for r in records if r.error)
        elapsed = time.time() - phase.started
        say(
            f"  [{phase.name}] {elapsed:5.1f}s posted {len(records)}/{phase.orders}, final {finals}"
            f" ({finals / elapsed:.0f}/s), in flight {len(records) - finals - failed}"
            + (f", POST errors {failed}" if failed else "")
        )
        try:
            deployment.check_alive()
        except RuntimeError as error:
            phase.failure = str(error)
            stop.set()


def collect_finals(api: Api, phase: Phase) -> None:
    """Reads every order of the phase back, for its final status and the server's stamp of it."""
    by_id = {r.order_id: r for r in phase.records if r.order_id}
    for customer_id in phase.customers:
        for order in api.pages("/api/orders", {"customer_id": customer_id}):
            record = by_id.get(order["id"])
            if record is None:
                continue
            record.status = order["status"]
            record.failure_reason = order.get("failure_reason")
            record.created_stamp = dt.datetime.fromisoformat(order["created_at"]).timestamp()
            if record.status in FINAL_STATUSES:
                record.final_stamp = dt.datetime.fromisoformat(order["updated_at"]).timestamp()


def warm_up(deployment: Deployment, api: Api, run_id: str, orders: int, timeout: float, stop: threading.Event) -> None:
    if orders <= 0:
        return
    say(f"  warming up with {orders} orders ...")
    phase = prepare_phase(api, run_id, "warmup", "warm-up", orders, 4)
    poller = Poller(deployment.status_reader(api), None, stop)
    poller.start()
    run_closed_loop(api, poller, phase, orders, 4, timeout, stop)
    poller.close()
    if stop.is_set():
        raise KeyboardInterrupt
    errors = [r.error for r in phase.records if r.error]
    if errors:
        raise RuntimeError(f"warm-up orders failed: {errors[0]}")


def measure(
    deployment: Deployment,
    kinds: list[PhaseKind],
    args: argparse.Namespace,
    run_id: str,
    warmup: int,
    stop: threading.Event,
) -> dict[str, dict[str, Any]]:
    """`warmup` unmeasured orders, then each phase of `kinds` in turn: {phase name: its figures}."""
    api = Api(deployment)
    results: dict[str, dict[str, Any]] = {}
    warm_up(deployment, api, run_id, warmup, args.phase_timeout, stop)
    for kind in kinds:
        label = kind.label(args)
        say(f"phase {label}")
        phase = prepare_phase(api, run_id, kind.name, label, kind.orders(args), kind.customers(args), kind.stock(args))
        results[kind.name] = run_phase(deployment, api, phase, kind, args, stop)
    return results
