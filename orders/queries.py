"""The written-out statements of the orders context: those every order runs (config/kernel/sql.py says why
they skip the ORM's building, and how they keep its meaning)."""

from __future__ import annotations

from datetime import datetime

from config.kernel import sql
from orders.models import Order


def order_keep_first_answer_text(order_id: object, text: str) -> None:
    """Write the text of the answer that placed the order, and nothing else (its updated_at stays)."""
    sql.execute(_FIRST_ANSWER, [text, sql.adapt(Order, "id", order_id)])


def order_record_end(
    order_id: str, *, status: str, updated_at: datetime, failure_reason: str, failure_detail: str
) -> None:
    """Write how the order ended: its status, and why it failed ("" when it did not)."""
    sql.execute(
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
