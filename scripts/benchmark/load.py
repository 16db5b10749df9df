"""The load generators: how a phase's orders are placed (closed loop, open loop, a burst) and how each is seen
final: by the bench's poller, or by its own client over the API as a user's client would."""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .records import FINAL_STATUSES, OrderRecord

if TYPE_CHECKING:
    from .api import Api
    from .polling import Poller
    from .records import Phase


def stamp(text: str) -> float:
    """An API timestamp (ISO 8601) as seconds since the epoch."""
    return dt.datetime.fromisoformat(text).timestamp()


class OrderNumbers:
    """The numbers 0 to `total` - 1 of a phase's orders, handed out one at a time to its clients' threads."""

    def __init__(self, total: int):
        self.total, self.counter, self.lock = total, itertools.count(), threading.Lock()

    def take(self) -> int | None:
        """The next number, or None once all are taken."""
        with self.lock:
            index = next(self.counter)
        return index if index < self.total else None


def place_order(api: Api, poller: Poller | None, customer_id: str, sku: str) -> OrderRecord:
    """POSTs one order of one item; a refused or failed POST is recorded with its error, never raised. The
    order is tracked by `poller`, unless None: then whoever placed it reads its outcome."""
    record = OrderRecord(customer_id=customer_id, post_start=time.time())
    try:
        status, content = api.request(
            "POST", "/api/orders", {"customer_id": customer_id, "items": [{"sku": sku, "quantity": 1}]}
        )
        record.http_status = status
        if status == 201:
            placed = json.loads(content)
            record.order_id, record.created_stamp = placed["id"], stamp(placed["created_at"])
        else:
            record.error = f"HTTP {status}: {content[:200]!r}"
    except (OSError, http.client.HTTPException) as error:
        record.error = f"{type(error).__name__}: {error}"
    record.post_end = time.time()
    if record.order_id and poller is not None:
        poller.track(record)
    return record


# Below the client's socket timeout (api.py): a wait answers by then, the order PENDING still if need be.
WAIT_S = 20


def read_outcome(api: Api, record: OrderRecord, wait: bool = False) -> bool:
    """GET /api/orders/{id} once, or GET /api/orders/{id}/wait when `wait`; True when the order is final, which
    the record then says. A failed read is not final: it is asked again."""
    path = f"/api/orders/{record.order_id}" + (f"/wait?timeout={WAIT_S}" if wait else "")
    try:
        status, content = api.request("GET", path)
    except (OSError, http.client.HTTPException):
        return False
    if status != 200:
        return False
    order = json.loads(content)
    if order["status"] not in FINAL_STATUSES:
        return False
    record.observed_final = time.time()
    record.status, record.failure_reason = order["status"], order.get("failure_reason")
    record.final_stamp = stamp(order["updated_at"])
    record.done.set()
    return True


def await_over_api(
    api: Api,
    records: list[OrderRecord],
    interval: float,
    timeout: float,
    stop: threading.Event,
    waits: Api | None = None,
) -> None:
    """Reads each order of `records` over the API, round after round `interval` apart, until all are final.
    With `waits`, each read is a wait for the order's end there (GET /api/orders/{id}/wait), one after the
    other: a round asks again only for what a wait's timeout or a failed request left."""
    waiting = [r for r in records if r.order_id]
    deadline = time.monotonic() + timeout
    while waiting and not stop.is_set() and time.monotonic() < deadline:
        waiting = [r for r in waiting if not read_outcome(waits or api, r, wait=waits is not None)]
        if waiting:
            stop.wait(interval)


def run_closed_loop(
    api: Api, poller: Poller, phase: Phase, orders: int, concurrency: int, timeout: float, stop: threading.Event
) -> None:
    """`concurrency` clients; each places an order and waits for it to be final before the next."""
    numbers = OrderNumbers(orders)

    def client() -> None:
        while not stop.is_set() and (index := numbers.take()) is not None:
            record = place_order(api, poller, phase.customer(index), phase.sku)
            phase.records.append(record)
            deadline = time.monotonic() + timeout
            while record.order_id and not record.done.wait(0.2):
                if stop.is_set() or time.monotonic() > deadline:
                    return

    join_all(start_threads(client, concurrency))


def run_api_polling(
    api: Api,
    phase: Phase,
    orders: int,
    clients: int,
    interval: float,
    timeout: float,
    stop: threading.Event,
    waits: Api | None = None,
) -> None:
    """`clients` closed-loop clients as a checkout page is one: each places an order, asks
    GET /api/orders/{id} every `interval` seconds until it is final, then places the next. With `waits`, it
    waits for the end instead, in one GET /api/orders/{id}/wait there."""
    numbers = OrderNumbers(orders)

    def client() -> None:
        while not stop.is_set() and (index := numbers.take()) is not None:
            record = place_order(api, None, phase.customer(index), phase.sku)
            phase.records.append(record)
            await_over_api(api, [record], interval, timeout, stop, waits)

    join_all(start_threads(client, clients))


def run_burst(
    api: Api,
    phase: Phase,
    orders: int,
    clients: int,
    interval: float,
    timeout: float,
    stop: threading.Event,
    waits: Api | None = None,
) -> None:
    """`orders` orders posted as fast as `clients` clients can post them, each client waiting for no answer
    but its POST's; then each reads the outcome of the orders it placed over the API, `interval` apart, or
    with `waits` waits there for each in turn."""
    numbers = OrderNumbers(orders)

    def client() -> None:
        placed = []
        while not stop.is_set() and (index := numbers.take()) is not None:
            record = place_order(api, None, phase.customer(index), phase.sku)
            phase.records.append(record)
            placed.append(record)
        await_over_api(api, placed, interval, timeout, stop, waits)

    join_all(start_threads(client, clients))


def run_open_loop(api: Api, poller: Poller, phase: Phase, rate: float, seconds: float, stop: threading.Event) -> None:
    """Orders sent on a fixed schedule, whatever the system's answers, by a pool of posting threads."""
    jobs: queue.Queue[int | None] = queue.Queue()
    posters = 16

    def poster() -> None:
        while (index := jobs.get()) is not None and not stop.is_set():
            phase.records.append(place_order(api, poller, phase.customer(index), phase.sku))

    threads = start_threads(poster, posters)
    start = time.monotonic()
    for index in range(int(rate * seconds)):
        if stop.wait(max(0.0, start + index / rate - time.monotonic())):
            break
        jobs.put(index)
    for _ in threads:
        jobs.put(None)
    join_all(threads)


def start_threads(target: Callable[[], None], count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # in short waits, so that Ctrl-C is seen
