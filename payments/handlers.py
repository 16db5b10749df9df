"""The payments consumer: one handler per command, each calling one service."""

from __future__ import annotations

from decimal import Decimal

from messaging.bus import compensation
from messaging.envelope import Envelope
from payments.services import payment_process, payment_refund


def handle_payment_process(message: Envelope) -> None:
    payload = message.payload
    payment_process(
        order_id=payload["order_id"],
        customer_id=payload["customer_id"],
        amount=Decimal(payload["amount"]),
        currency=payload["currency"],
    )


@compensation
def handle_payment_refund(message: Envelope) -> None:
    payment_refund(order_id=message.payload["order_id"], reason=message.payload["reason"])


HANDLERS = {
    "payment.process": handle_payment_process,
    "payment.refund": handle_payment_refund,
}
