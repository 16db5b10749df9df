"""The load generators: how a phase's orders are placed, closed-loop or open-loop, each tracked by the poller."""

from __future__ import annotations

import http.client
import itertools
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .records import OrderRecord

if TYPE_CHECKING:
    from .api import Api
    from .polling import Poller
    from .records import Phase


def place_order(api: Api, poller: Poller, customer_id: str, sku: str) -> OrderRecord:
    """POSTs one order of one item; a refused or failed POST is recorded with its error, never raised."""
    record = OrderRecord(customer_id=customer_id, post_start=time.time())
    try:
        status, content = api.request(
            "POST", "/api/orders", {"customer_id": customer_id, "items": [{"sku": sku, "quantity": 1}]}
        )
        record.http_status = status
        if status == 201:
            record.order_id = json.loads(content)["id"]
        else:
            record.error = f"HTTP {status}: {content[:200]!r}"
    except (OSError, http.client.HTTPException) as error:
        record.error = f"{type(error).__name__}: {error}"
    record.post_end = time.time()
    if record.order_id:
        poller.track(record)
    return record


def run_closed_loop(
    api: Api, poller: Poller, phase: Phase, orders: int, concurrency: int, timeout: float, stop: threading.Event
) -> None:
    """`concurrency` clients; each places an order and waits for it to be final before the next."""
    counter, lock = itertools.count(), threading.Lock()

    def client() -> None:
        while not stop.is_set():
            with lock:
                index = next(counter)
            if index >= orders:
                return
            record = place_order(api, poller, phase.customer(index), phase.sku)
            phase.records.append(record)
            deadline = time.monotonic() + timeout
            while record.order_id and not record.done.wait(0.2):
                if stop.is_set() or time.monotonic() > deadline:
                    return

    join_all(start_threads(client, concurrency))


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
