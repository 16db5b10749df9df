"""The order saga's definition: take the payment, then reserve the stock. Pure.

Payments undoes a charge on `payment.refund` and answers `payment.refunded`. A reservation takes the goods
at once; the saga sends `inventory.release` when its compensation reaches the stock (a timeout or a cancel
while the reservation was asked) and for a reservation that lands after the saga failed, so inventory needs
neither `order.completed` nor `order.failed`. The deadlines name the settings that give them.
"""

from __future__ import annotations

from saga.definition import CompensateByCommand, ReleasedOnFailure, SagaDefinition, Step

PAYMENT = Step(
    name="payment",
    command="payment.process",
    success="payment.processed",
    failures=("payment.failed",),
    pending_state="PAYMENT_PENDING",
    deadline="SAGA_PAYMENT_DEADLINE_S",
    # Payments refuses a later charge once it has seen the refund, so a refund settles the payment even when
    # it overtakes the charge.
    compensation=CompensateByCommand(
        command="payment.refund",
        reply="payment.refunded",
        state="COMPENSATING",
        # A refund not answered by its deadline is sent again: a lost refund cannot strand the saga.
        resend_on_timeout=True,
        deadline="SAGA_COMPENSATION_DEADLINE_S",
    ),
)

INVENTORY = Step(
    name="inventory",
    command="inventory.reserve",
    success="inventory.reserved",
    failures=("inventory.reservation_failed",),
    pending_state="INVENTORY_PENDING",
    deadline="SAGA_INVENTORY_DEADLINE_S",
    # Inventory refuses a later reservation for an order once it has released it. A failed saga whose stock
    # is still taken asks its release again.
    compensation=ReleasedOnFailure(late_command="inventory.release", held_input="saga.stock_held", sent_by_saga=True),
)

ORDER_SAGA = SagaDefinition(
    steps=(PAYMENT, INVENTORY),
    completed_event="order.completed",
    failed_event="order.failed",
    completed_state="COMPLETED",
    failed_state="FAILED",
    cancelled_state="CANCELLED",
    timeout="saga.timeout",
    cancel="saga.cancel",
    cancelled_reason="cancelled",
)
