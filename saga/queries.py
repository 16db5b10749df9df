"""The written-out statements of the saga: those every message it applies runs (config/kernel/sql.py says why
they skip the ORM's building, and how they keep its meaning)."""

from __future__ import annotations

from config.kernel import sql
from saga.models import Saga

# What applying a message reads of the saga.
APPLIED_FIELDS = (
    "state",
    "failure_reason",
    "failure_detail",
    "customer_id",
    "amount",
    "currency",
    "items",
    "compensation_attempts",
    "release_sent_at",
)


def saga_locked(order_id: str) -> Saga | None:
    """The order's saga, locked until the transaction ends (FOR UPDATE where the database has it), with the
    fields of APPLIED_FIELDS; None when the order has no saga."""
    found = sql.select_one(Saga, APPLIED_FIELDS, "order_id = %s", [sql.adapt(Saga, "order_id", order_id)], lock=True)
    return None if found is None else sql.loaded(Saga, order_id=order_id, **found)
