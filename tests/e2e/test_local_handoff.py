"""The local hand-off end to end (MESSAGING_LOCAL_HANDOFF): two real workers that hand their replies and
commands to their own consumers, a sale of scarce stock among customers who can and cannot pay. Every order
ends, the stock sold is exactly the stock there was, every failed order's money is back, nothing is doubled,
and the saga's commands and replies, the API's payment.process among them, went without the broker."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from config.audit import audit
from messaging.models import OutboxMessage
from payments.models import LedgerEntry
from tests.e2e.conftest import balance, place_order, stock, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import celery_worker, wait_for

pytestmark = [pytest.mark.e2e]

HANDOFF = {"MESSAGING_LOCAL_HANDOFF": "true"}


def test_two_handing_off_workers_sell_scarce_stock_exactly_and_refund_every_other_order(api, started):
    workers = [started(celery_worker("first", **HANDOFF)), started(celery_worker("second", **HANDOFF))]
    sku = create_product(api, stock_level=7, price="10.00")
    payers = [create_account(api, balance_amount="100.00") for _ in range(20)]
    broke = [create_account(api, balance_amount="5.00") for _ in range(4)]

    with ThreadPoolExecutor(8) as pool:
        placed = list(
            pool.map(lambda customer: place_order(api, customer, [{"sku": sku, "quantity": 1}]), payers + broke)
        )
        finals = list(pool.map(lambda order: wait_final(api, order["id"], timeout=60), placed))

    outcomes = [(final["status"], final["failure_reason"]) for final in finals]
    assert outcomes[:20].count(("COMPLETED", None)) == 7
    assert outcomes[:20].count(("FAILED", "out_of_stock")) == 13
    assert outcomes[20:] == [("FAILED", "insufficient_funds")] * 4
    product = stock(api, sku)
    assert (product["on_hand"], product["reserved"]) == (0, 0)
    kept = sorted(balance(api, customer) for customer in payers)
    assert kept == [Decimal("90.00")] * 7 + [Decimal("100.00")] * 13
    assert all(balance(api, customer) == Decimal("5.00") for customer in broke)
    for final in finals:
        assert LedgerEntry.objects.filter(payment__order_id=final["id"], kind="CAPTURE").count() <= 1
    # the orders' placing, from the API, went from a worker's relay to its own consumers; so did the replies and
    # the commands the workers wrote
    orders = [final["id"] for final in finals]
    rows = OutboxMessage.objects.filter(order_id__in=orders)
    assert (
        rows.filter(routing_key__in=["payment.process", "payment.processed", "payment.failed", "inventory.reserve"])
        .exclude(handed_off=True)
        .count()
        == 0
    )
    assert rows.filter(routing_key="payment.refund", handed_off=True).count() == 13
    wait_for(lambda: not rows.filter(published_at__isnull=True).exists(), message="the outbox to be published")
    # and no message reached a consumer twice: a row stays locked from a relay's claim to its hand-off's mark
    assert "skipped by" not in "".join(worker.log() for worker in workers)
    wait_for(lambda: not audit(settled=True), timeout=30, message="a clean audit")
