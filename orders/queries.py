"""The written-out statements of the orders context: those every order runs (config/kernel/sql.py says why
they skip the ORM's building, and how they keep its meaning)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from config.kernel import sql
from orders.models import Order, OrderLine
from saga.models import SagaTransition


def order_keep_first_answer_text(order_id: object, text: str) -> None:
    """Write the text of the answer that placed the order, and nothing else (its updated_at stays)."""
    sql.execute(_FIRST_ANSWER, [text, sql.adapt(Order, "id", order_id)])


def order_record_end(
    order_id: str, *, status: str, updated_at: datetime, failure_reason: str, failure_detail: str
) -> None:
    """Write how the order ended: its status, and why it failed ("" when it did not). With the saga's batch,
    when in one: the order is there as long as its saga is."""
    sql.later(
        _FINISH,
        [
            status,
            sql.adapt(Order, "updated_at", updated_at),
            failure_reason,
            failure_detail,
            sql.adapt(Order, "id", order_id),
        ],
    )


_FIRST_ANSWER = f"UPDATE {sql.table(Order)} SET first_answer_text = %s WHERE id = %s"
_FINISH = (
    f"UPDATE {sql.table(Order)} SET status = %s, updated_at = %s, failure_reason = %s, failure_detail = %s "
    "WHERE id = %s"
)


@dataclass(frozen=True)
class OrderView:
    """An order as its status page shows it: the order, its lines and its saga's timeline, as plain values.

    `lines` are (sku, quantity, unit_price) in the order they were written; `history` is the saga's
    (from_state, to_state, message_type, message_id, at), oldest first, empty when the order has no saga.
    """

    id: str
    status: str
    customer_id: str
    total: Decimal
    currency: str
    failure_reason: str
    failure_detail: str
    created_at: datetime
    updated_at: datetime
    lines: list[tuple[str, int, Decimal]]
    history: list[tuple[str, str, str, str, datetime]]


_ORDER_FIELDS = (
    "id",
    "status",
    "customer_id",
    "total",
    "currency",
    "failure_reason",
    "failure_detail",
    "created_at",
    "updated_at",
)
_LINE_FIELDS = ("sku", "quantity", "unit_price")
_STEP_FIELDS = ("from_state", "to_state", "message_type", "message_id", "at")


def order_status_page(order_id: str) -> OrderView | None:
    """The order's status page in one statement on PostgreSQL (the lines and the saga's timeline aggregated
    beside the order's row), in three written-out selects elsewhere."""
    key = sql.adapt(Order, "id", order_id)
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        return _order_view_in_one_statement(key)
    found = sql.select_one(Order, _ORDER_FIELDS, "id = %s", [key])
    if found is None:
        return None
    lines = sql.select(OrderLine, _LINE_FIELDS, "order_id = %s ORDER BY id", [key])
    steps = sql.select(SagaTransition, _STEP_FIELDS, "saga_id = %s ORDER BY at, id", [key])
    return OrderView(
        **{**found, "id": str(found["id"])},
        lines=[tuple(line.values()) for line in lines],
        history=[tuple(step.values()) for step in steps],
    )


_ONE_STATEMENT = f"""
SELECT o.id::text, o.status, o.customer_id, o.total, o.currency, o.failure_reason, o.failure_detail,
       o.created_at, o.updated_at, l.skus, l.quantities, l.unit_prices,
       t.from_states, t.to_states, t.message_types, t.message_ids, t.ats
FROM {sql.table(Order)} o
LEFT JOIN LATERAL (
    SELECT array_agg(sku ORDER BY id) AS skus, array_agg(quantity ORDER BY id) AS quantities,
           array_agg(unit_price ORDER BY id) AS unit_prices
    FROM {sql.table(OrderLine)} WHERE order_id = o.id
) l ON true
LEFT JOIN LATERAL (
    SELECT array_agg(from_state ORDER BY at, id) AS from_states, array_agg(to_state ORDER BY at, id) AS to_states,
           array_agg(message_type ORDER BY at, id) AS message_types,
           array_agg(message_id ORDER BY at, id) AS message_ids, array_agg(at ORDER BY at, id) AS ats
    FROM {sql.table(SagaTransition)} WHERE saga_id = o.id
) t ON true
WHERE o.id = %s
"""


def _order_view_in_one_statement(key: Any) -> OrderView | None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_ONE_STATEMENT, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    skus, quantities, unit_prices = row[9] or [], row[10] or [], row[11] or []
    steps = [row[12] or [], row[13] or [], row[14] or [], row[15] or [], row[16] or []]
    return OrderView(
        **dict(zip(_ORDER_FIELDS, row[:9], strict=True)),
        lines=list(zip(skus, quantities, unit_prices, strict=True)),
        history=list(zip(*steps, strict=True)),
    )
