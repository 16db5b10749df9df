"""How the bench sees an order become final: one poller thread asks which orders in flight left PENDING.

Polling GET /api/orders/{id} per order at a 5 ms interval would send ~4,000 requests a second at concurrency 20
to a 2-core machine: the poll would be the load. One poller thread asking GET /api/orders?status=PENDING every
10 ms is cheaper, but measured here it still cost the web tier as much CPU as the POSTs themselves, which
doubled "web CPU per saga". So when the bench can read the database (always when it starts the deployment
itself, and with `--database-url`), one poller thread asks the database every `--poll-interval` (5 ms) which
of the orders in flight are no longer PENDING: one indexed query on its own connection, excluded from the CPU
figures. Against `--url` alone it falls back to the list endpoint (all pages), every 50 ms by default, and
counts an order final once it is missing from that list; the web CPU then includes those requests, whose
count is reported.

The poller's detection time is reported as `post_to_final_observed_ms`, an upper bound. The figure reported
as POST-to-final is measured from the server's own stamp instead: the order's `updated_at`, which
`order_finish` writes in the transaction that makes the order final, minus the client's clock just before it
sent the POST. Both are this machine's wall clock when the deployment is local; against a remote `--url`
with clock skew, trust the observed figure.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .records import OrderRecord
from .topology import pg_connect

if TYPE_CHECKING:
    from .api import Api


class StatusReader:
    """Says which of the given orders are no longer PENDING."""

    interval = 0.005

    def final_among(self, order_ids: list[str]) -> set[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PostgresStatusReader(StatusReader):
    def __init__(self, database_url: str):
        self.conn = pg_connect(database_url)

    def final_among(self, order_ids: list[str]) -> set[str]:
        rows = self.conn.execute(
            "SELECT id::text FROM orders_order WHERE id = ANY(%s::uuid[]) AND status <> 'PENDING'", (order_ids,)
        ).fetchall()
        return {order_id for (order_id,) in rows}

    def close(self) -> None:
        self.conn.close()


class SqliteStatusReader(StatusReader):
    """Reads the embedded database file from this process: no load on the web process and its GIL."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path, timeout=20, check_same_thread=False)

    def final_among(self, order_ids: list[str]) -> set[str]:
        by_hex = {uuid.UUID(order_id).hex: order_id for order_id in order_ids}  # Django stores hex there
        marks = ",".join("?" * len(by_hex))
        rows = self.conn.execute(
            f"SELECT id FROM orders_order WHERE status <> 'PENDING' AND id IN ({marks})", tuple(by_hex)
        ).fetchall()
        return {by_hex[order_id] for (order_id,) in rows}

    def close(self) -> None:
        self.conn.close()


class HttpStatusReader(StatusReader):
    """Through the API: an order is final once GET /api/orders?status=PENDING no longer lists it.

    Only asked about orders whose POST answered before the list was asked for: those are committed, so they
    are listed while pending.
    """

    interval = 0.05

    def __init__(self, api: Api):
        self.api = api

    def final_among(self, order_ids: list[str]) -> set[str]:
        pending = {order["id"] for order in self.api.pages("/api/orders", {"status": "PENDING"})}
        return set(order_ids) - pending


class Poller(threading.Thread):
    """One thread that finds which tracked orders have left PENDING, with one question per interval."""

    def __init__(self, reader: StatusReader, interval: float | None, stop: threading.Event):
        super().__init__(name="bench-poller", daemon=True)
        self.reader, self.run_stop = reader, stop
        self.interval = reader.interval if interval is None else interval
        self.halt, self.wake = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        self.in_flight: dict[str, OrderRecord] = {}
        self.requests = 0
        self.errors = 0

    def track(self, record: OrderRecord) -> None:
        with self.lock:
            self.in_flight[record.order_id] = record
        self.wake.set()

    def close(self) -> None:
        self.halt.set()
        self.join(10)
        self.reader.close()

    def run(self) -> None:
        while not (self.halt.is_set() or self.run_stop.is_set()):
            if not self.in_flight:
                self.wake.wait(0.1)
                self.wake.clear()
                continue
            asked = time.time()
            with self.lock:
                candidates = {r.order_id: r for r in self.in_flight.values() if r.post_end <= asked}
            try:
                final = self.reader.final_among(list(candidates))
            except Exception:  # noqa: BLE001 - a failed poll is retried; the run's own checks catch a dead system
                self.errors += 1
                self.halt.wait(0.2)
                continue
            finally:
                self.requests += 1
            seen = time.time()
            for order_id in final:
                candidates[order_id].observed_final = seen
                with self.lock:
                    self.in_flight.pop(order_id, None)
                candidates[order_id].done.set()
            self.halt.wait(self.interval)
