"""The payment gateway interface, and the built-in one: a ledger of customer accounts."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from config.kernel import sql
from payments import queries
from payments.models import Account, LedgerEntry, Payment


@dataclass(frozen=True)
class ChargeResult:
    captured: bool
    code: str = ""
    reason: str = ""


class PaymentGateway(Protocol):
    def charge(self, *, payment: Payment) -> ChargeResult:
        """Take `payment.amount` from the customer. Runs in the caller's transaction."""

    def refund(self, *, payment: Payment) -> None:
        """Give a captured payment back. Runs in the caller's transaction."""


class LedgerGateway:
    """Declines `unknown_account` and `insufficient_funds`; every capture and refund is a ledger entry."""

    def charge(self, *, payment: Payment) -> ChargeResult:
        # One statement on the usual path: the balance is checked and taken under the row lock the UPDATE holds.
        if not queries.balance_take(customer_id=payment.customer_id, amount=payment.amount):
            account = Account.objects.filter(customer_id=payment.customer_id).first()
            if account is None:
                return ChargeResult(False, "unknown_account", "the customer has no account")
            return ChargeResult(False, "insufficient_funds", f"balance {account.balance} is short of {payment.amount}")
        sql.insert(
            LedgerEntry(
                account_id=payment.customer_id, payment=payment, kind=LedgerEntry.Kind.CAPTURE, amount=payment.amount
            )
        )
        return ChargeResult(True)

    def refund(self, *, payment: Payment) -> None:
        # Written with the refund's other rows, in one statement on PostgreSQL (sql.batched in bus.dispatch).
        queries.balance_give(customer_id=payment.customer_id, amount=payment.amount)
        sql.insert(
            LedgerEntry(
                account_id=payment.customer_id, payment=payment, kind=LedgerEntry.Kind.REFUND, amount=payment.amount
            )
        )


def default_gateway() -> PaymentGateway:
    return LedgerGateway()


ZERO = Decimal("0.00")
