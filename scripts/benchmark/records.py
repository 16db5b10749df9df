"""What the bench records of each order it places and of each phase, and what it knows of the saga."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

FINAL_STATUSES = {"COMPLETED", "FAILED", "CANCELLED"}
# The messages of a completed saga that a consumer here handles, in the order they are sent.
SAGA_PATH = ("payment.process", "payment.processed", "inventory.reserve", "inventory.reserved")


@dataclass
class OrderRecord:
    """One order: client-side stamps of its POST, the server's stamps of the order, and what the poller and the
    final read-back said of it."""

    customer_id: str
    post_start: float = 0.0
    post_end: float = 0.0
    http_status: int = 0
    error: str = ""
    order_id: str = ""
    created_stamp: float | None = None  # the order's own created_at, from the POST's answer
    observed_final: float | None = None
    status: str = ""
    final_stamp: float | None = None  # the order's own updated_at once it is final
    failure_reason: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)


@dataclass
class Phase:
    """One measured batch of orders, with its own product and customers."""

    name: str
    label: str
    sku: str
    orders: int
    customers: list[str]
    stock: int = 0  # units of the phase's product at its start
    price: str = "1.00"
    records: list[OrderRecord] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    failure: str = ""
    loadavg_start: str = ""

    def customer(self, index: int) -> str:
        return self.customers[index % len(self.customers)]
