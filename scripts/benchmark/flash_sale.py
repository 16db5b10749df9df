"""The flash sale's invariants, read from the deployment's database once the phase is over.

Many customers order one product whose stock runs out. When the phase is over, the database must say: exactly
the stock was sold (the product's `on_hand` and `reserved` are 0, and the completed orders hold every unit);
nothing was oversold; every other order failed for want of stock and its payment was refunded; the money taken
is the price of what was sold; and no saga waited past a deadline (a `saga.timeout` in its timeline).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deployments import Deployment
    from .records import Phase

# One row of counts for the phase's orders of its product (PostgreSQL; the flash sale is a production phase).
COUNTS_SQL = """
WITH phase AS (
    SELECT o.id, o.status, o.failure_reason, l.quantity, p.status AS payment
    FROM orders_order o
    JOIN orders_orderline l ON l.order_id = o.id AND l.sku = %(sku)s
    LEFT JOIN payments_payment p ON p.order_id = o.id
    WHERE o.id = ANY(%(ids)s::uuid[])
)
SELECT
    (SELECT on_hand FROM inventory_product WHERE sku = %(sku)s),
    (SELECT reserved FROM inventory_product WHERE sku = %(sku)s),
    count(*),
    count(*) FILTER (WHERE status = 'COMPLETED'),
    coalesce(sum(quantity) FILTER (WHERE status = 'COMPLETED'), 0),
    count(*) FILTER (WHERE status = 'PENDING'),
    count(*) FILTER (WHERE status <> 'COMPLETED' AND status <> 'PENDING' AND payment = 'REFUNDED'),
    count(*) FILTER (WHERE status <> 'COMPLETED' AND payment = 'CAPTURED'),
    count(*) FILTER (WHERE status <> 'COMPLETED' AND status <> 'PENDING' AND failure_reason <> 'out_of_stock'),
    (SELECT count(*) FROM saga_sagatransition WHERE saga_id = ANY(%(ids)s::uuid[])
        AND message_type = 'saga.timeout'),
    (SELECT coalesce(sum(opening_balance - balance), 0) FROM payments_account WHERE customer_id = ANY(%(customers)s))
FROM phase
"""
COUNT_NAMES = (
    "on_hand_left",
    "reserved_left",
    "orders",
    "completed",
    "units_sold",
    "pending",
    "refunded",
    "charged_but_not_completed",
    "failed_for_another_reason",
    "timeouts",
    "money_taken",
)


def flash_sale_invariants(deployment: Deployment, phase: Phase) -> dict[str, Any] | None:
    """The counts and the verdict of each invariant; None when the deployment's database cannot be read."""
    if deployment.database_url is None:
        return None
    ids = [r.order_id for r in phase.records if r.order_id]
    (row,) = deployment.query(COUNTS_SQL, {"sku": phase.sku, "ids": ids, "customers": phase.customers})
    return judge(dict(zip(COUNT_NAMES, row, strict=True)), stock=phase.stock, price=Decimal(phase.price))


def judge(counts: dict[str, Any], *, stock: int, price: Decimal) -> dict[str, Any]:
    """{counts, invariants: {what: held}, held: all of them} from the database's counts. Pure."""
    unsold = counts["orders"] - counts["completed"]
    sellable = min(stock, counts["orders"])  # one unit an order
    invariants = {
        "exactly the stock sold": counts["units_sold"] == sellable and counts["on_hand_left"] == stock - sellable,
        "no oversell": counts["units_sold"] <= stock and counts["on_hand_left"] >= 0,
        "no stock left reserved": counts["reserved_left"] == 0,
        "every order final": counts["pending"] == 0,
        "every other order refunded": counts["refunded"] == unsold and counts["charged_but_not_completed"] == 0,
        "every other order failed for want of stock": counts["failed_for_another_reason"] == 0,
        "the money taken is the price of what was sold": Decimal(counts["money_taken"]) == price * counts["units_sold"],
        "no order waited past its deadline": counts["timeouts"] == 0,
    }
    shown = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in counts.items()}
    return {"counts": shown, "invariants": invariants, "held": all(invariants.values())}
