"""The written-out statements of the payments context: those every order runs (config/kernel/sql.py says why
they skip the ORM's building, and how they keep its meaning)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from config.kernel import sql
from payments.models import Account, ClosedOrder, Payment


def order_is_closed(order_id: str) -> bool:
    """Whether a refund closed the order to later charges."""
    return bool(
        sql.select_one(ClosedOrder, ["order_id"], "order_id = %s", [sql.adapt(ClosedOrder, "order_id", order_id)])
    )


def payment_of(order_id: str) -> Payment | None:
    """The order's payment, or None when it was never charged."""
    found = sql.select_one(
        Payment,
        ["id", "customer_id", "amount", "currency", "status", "decline_code"],
        "order_id = %s",
        [sql.adapt(Payment, "order_id", order_id)],
    )
    return None if found is None else sql.loaded(Payment, order_id=order_id, **found)


def balance_take(*, customer_id: str, amount: Decimal) -> bool:
    """Take `amount` from the account's balance if it holds that much; False (nothing taken) when it does not,
    or when there is no such account. One statement: the balance is checked under the row lock the UPDATE
    holds."""
    amount = sql.adapt(Account, "balance", amount)
    return bool(sql.execute(_TAKE, [amount, customer_id, amount]))


_TAKE = f"UPDATE {sql.table(Account)} SET balance = balance - %s WHERE customer_id = %s AND balance >= %s"


def balance_give(*, customer_id: str, amount: Decimal) -> None:
    """Give `amount` back to the account, with the rows of the current `sql.batched()` block (a refund's)."""
    sql.later(_GIVE, [sql.adapt(Account, "balance", amount), customer_id])


_GIVE = f"UPDATE {sql.table(Account)} SET balance = balance + %s WHERE customer_id = %s"


def order_close(*, order_id: str, reason: str) -> None:
    """Close the order to later charges, unless it is closed already, with the rows of the current
    `sql.batched()` block. Run under the order's lock (`messaging.locks.order_lock`)."""
    sql.later(
        _CLOSE,
        [
            sql.adapt(ClosedOrder, "order_id", order_id),
            reason[: ClosedOrder._meta.get_field("reason").max_length],
            sql.adapt(ClosedOrder, "closed_at", timezone.now()),
        ],
    )


_CLOSE = (
    f"INSERT INTO {sql.table(ClosedOrder)} (order_id, reason, closed_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (order_id) DO NOTHING"
)
