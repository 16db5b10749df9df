"""Writes of the payments context: accounts, charges and refunds."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import IntegrityError, transaction

from config.kernel import sql
from config.kernel.errors import ConflictError
from messaging.locks import order_lock
from messaging.outbox import publish
from payments import queries
from payments.gateway import ZERO, PaymentGateway, default_gateway
from payments.models import Account, LedgerEntry, Payment

logger = logging.getLogger(__name__)


class AccountExistsError(ConflictError):
    code = "account_exists"


def account_create(*, customer_id: str, balance: Decimal) -> Account:
    """Open an account with an opening balance. Raises AccountExistsError for a taken customer_id."""
    try:
        with transaction.atomic(durable=True):
            return Account.objects.create(customer_id=customer_id, opening_balance=balance, balance=balance)
    except IntegrityError:
        raise AccountExistsError(
            f"customer {customer_id!r} already has an account", {"customer_id": customer_id}
        ) from None


def payment_process(
    *, order_id: str, customer_id: str, amount: Decimal, currency: str, gateway: PaymentGateway | None = None
) -> Payment | None:
    """Charge an order once. Must run in a transaction.

    Emits `payment.processed` or `payment.failed`. A repeat re-emits the first outcome and charges nothing;
    an order already settled by a refund is refused (`order_closed`) and charges nothing.
    """
    order_lock("payments", order_id)
    payment = queries.payment_of(order_id)
    if payment is None:
        if queries.order_is_closed(order_id):
            publish(
                "payment.failed",
                {
                    "order_id": order_id,
                    "code": "order_closed",
                    "reason": "the order was refunded before it could be charged",
                },
            )
            return None
        payment = _charge(order_id, customer_id, amount, currency, gateway or default_gateway())
    _announce(payment)
    return payment


def _charge(order_id: str, customer_id: str, amount: Decimal, currency: str, gateway: PaymentGateway) -> Payment:
    # Saved once, after the charge: its ledger entry may point at it first (the foreign key is checked at commit).
    payment = Payment(order_id=order_id, customer_id=customer_id, amount=amount, currency=currency)
    result = gateway.charge(payment=payment)
    payment.status = Payment.Status.CAPTURED if result.captured else Payment.Status.DECLINED
    payment.decline_code = result.code
    return sql.insert(payment)


_DECLINE_TEXT = {
    "insufficient_funds": "the account balance is short of the order total",
    "unknown_account": "the customer has no account",
}


def _announce(payment: Payment) -> None:
    order_id = str(payment.order_id)
    if payment.status == Payment.Status.DECLINED:
        publish(
            "payment.failed",
            {
                "order_id": order_id,
                "code": payment.decline_code,
                "reason": _DECLINE_TEXT.get(payment.decline_code, payment.decline_code),
            },
        )
    else:
        publish(
            "payment.processed",
            {"order_id": order_id, "payment_id": str(payment.id), "amount": f"{payment.amount:.2f}"},
        )


def payment_refund(*, order_id: str, reason: str, gateway: PaymentGateway | None = None) -> Payment | None:
    """Give back what was captured for an order, and close it to later charges. Must run in a transaction.

    Idempotent: a refund of a refunded payment, or of a charge that never happened, moves no money and
    still answers `payment.refunded`.
    """
    order_lock("payments", order_id)
    payment = queries.payment_of(order_id)
    # Its writes go out together when the handler returns (sql.batched): the order's lock keeps the rows still.
    queries.order_close(order_id=order_id, reason=reason)
    if payment is not None and payment.status == Payment.Status.CAPTURED:
        (gateway or default_gateway()).refund(payment=payment)
        payment.status = Payment.Status.REFUNDED
        sql.update(payment, ["status"], with_batch=True)
    refunded = payment if payment is not None and payment.status == Payment.Status.REFUNDED else None
    publish(
        "payment.refunded",
        {
            "order_id": order_id,
            "payment_id": str(refunded.id) if refunded is not None else None,
            "amount": f"{refunded.amount:.2f}" if refunded is not None else f"{ZERO:.2f}",
        },
    )
    return payment


def ledger_totals(*, customer_id: str) -> dict[str, Decimal]:
    """Captured and refunded sums of an account, from its ledger."""
    totals = {kind: ZERO for kind in LedgerEntry.Kind.values}
    for kind, amount in LedgerEntry.objects.filter(account_id=customer_id).values_list("kind", "amount"):
        totals[kind] += amount
    return totals
