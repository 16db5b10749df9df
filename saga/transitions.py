"""The order saga as one explicit, pure table (DESIGN §1). No Django here.

`decide(state, message_type)` gives what the saga does with a message in a state: the next state, the
messages to emit, and whether the message's failure reason becomes the saga's. Every pair of a state and a
message the saga hears has an entry, late and repeated replies included, so nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    PAYMENT_PENDING = "PAYMENT_PENDING"
    INVENTORY_PENDING = "INVENTORY_PENDING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})
PENDING_STATES = frozenset({State.PAYMENT_PENDING, State.INVENTORY_PENDING})

# Messages the saga hears. The last three are not on the wire: the sweep and the cancel API raise them.
PAYMENT_PROCESSED = "payment.processed"
PAYMENT_FAILED = "payment.failed"
PAYMENT_REFUNDED = "payment.refunded"
INVENTORY_RESERVED = "inventory.reserved"
INVENTORY_RESERVATION_FAILED = "inventory.reservation_failed"
# The sweep raises TIMEOUT when a saga is past the deadline of its state: a pending step did not answer, or
# the refund of a compensation did not. It raises STOCK_HELD when a saga that ended still has stock reserved
# for it past its deadline: the release (or the commit) that its end asked for was lost.
TIMEOUT = "saga.timeout"
STOCK_HELD = "saga.stock_held"
CANCEL = "saga.cancel"
INPUTS = (PAYMENT_PROCESSED, PAYMENT_FAILED, PAYMENT_REFUNDED, INVENTORY_RESERVED,
          INVENTORY_RESERVATION_FAILED, TIMEOUT, STOCK_HELD, CANCEL)

# Messages the saga emits.
PAYMENT_PROCESS = "payment.process"
PAYMENT_REFUND = "payment.refund"
INVENTORY_RESERVE = "inventory.reserve"
INVENTORY_RELEASE = "inventory.release"
ORDER_COMPLETED = "order.completed"
ORDER_FAILED = "order.failed"

# Reached through COMPENSATING: FAILED, or CANCELLED when the order was cancelled.
FINISH_COMPENSATION = "FINISH_COMPENSATION"
CANCELLED_REASON = "cancelled"


@dataclass(frozen=True)
class Transition:
    to_state: State | str | None  # None: stay in the current state
    emits: tuple[str, ...] = ()
    records_failure: bool = False  # the message's reason becomes the saga's failure reason
    note: str = ""

    @property
    def changes_state(self) -> bool:
        return self.to_state is not None


STAY = Transition(None, note="already applied or superseded: no effect")

# A reply that arrives after the saga has moved on, carrying money or stock, is compensated, never dropped.
LATE_CHARGE = Transition(None, (PAYMENT_REFUND,), note="late charge: refund it")
LATE_RESERVATION = Transition(None, (INVENTORY_RELEASE,), note="late reservation: release it")
START_COMPENSATION = Transition(State.COMPENSATING, (PAYMENT_REFUND,), records_failure=True)
# Repeating a compensation is safe: a repeated refund or release is a no-op at the participant.
REFUND_AGAIN = Transition(None, (PAYMENT_REFUND,), note="no payment.refunded before the deadline: refund again")
RELEASE_AGAIN = Transition(None, (INVENTORY_RELEASE,), note="stock still held after the end: release again")
COMMIT_AGAIN = Transition(None, (ORDER_COMPLETED,), note="stock still held after completion: announce it again")

TABLE: dict[tuple[State, str], Transition] = {
    (State.PAYMENT_PENDING, PAYMENT_PROCESSED): Transition(State.INVENTORY_PENDING, (INVENTORY_RESERVE,)),
    (State.PAYMENT_PENDING, PAYMENT_FAILED): Transition(State.FAILED, (ORDER_FAILED,), records_failure=True),
    (State.PAYMENT_PENDING, PAYMENT_REFUNDED): STAY,
    (State.PAYMENT_PENDING, INVENTORY_RESERVED): STAY,  # impossible before payment: nothing was asked
    (State.PAYMENT_PENDING, INVENTORY_RESERVATION_FAILED): STAY,
    # Payments refuses a later charge once it has seen the refund, so a refund here settles the payment.
    (State.PAYMENT_PENDING, TIMEOUT): START_COMPENSATION,
    (State.PAYMENT_PENDING, STOCK_HELD): STAY,  # the sweep raises it for ended sagas only
    (State.PAYMENT_PENDING, CANCEL): START_COMPENSATION,

    (State.INVENTORY_PENDING, PAYMENT_PROCESSED): STAY,
    (State.INVENTORY_PENDING, PAYMENT_FAILED): STAY,
    (State.INVENTORY_PENDING, PAYMENT_REFUNDED): STAY,
    (State.INVENTORY_PENDING, INVENTORY_RESERVED): Transition(State.COMPLETED, (ORDER_COMPLETED,)),
    (State.INVENTORY_PENDING, INVENTORY_RESERVATION_FAILED): START_COMPENSATION,
    # Inventory releases on order.failed, and refuses a later reservation for the order once it has.
    (State.INVENTORY_PENDING, TIMEOUT): START_COMPENSATION,
    (State.INVENTORY_PENDING, STOCK_HELD): STAY,
    (State.INVENTORY_PENDING, CANCEL): START_COMPENSATION,

    # A repeated refund is a no-op at payments, so a charge seen while compensating is refunded again.
    (State.COMPENSATING, PAYMENT_PROCESSED): LATE_CHARGE,
    (State.COMPENSATING, PAYMENT_FAILED): STAY,
    (State.COMPENSATING, PAYMENT_REFUNDED): Transition(FINISH_COMPENSATION, (ORDER_FAILED,)),
    (State.COMPENSATING, INVENTORY_RESERVED): STAY,  # order.failed, still to come, releases it
    (State.COMPENSATING, INVENTORY_RESERVATION_FAILED): STAY,
    # The refund or its answer was lost (dead-lettered, or swallowed by a dead connection): send it again.
    (State.COMPENSATING, TIMEOUT): REFUND_AGAIN,
    (State.COMPENSATING, STOCK_HELD): STAY,  # order.failed, still to come, releases it
    (State.COMPENSATING, CANCEL): STAY,
}

for _final in FINAL_STATES:
    TABLE.update({
        (_final, PAYMENT_PROCESSED): STAY if _final is State.COMPLETED else LATE_CHARGE,
        (_final, PAYMENT_FAILED): STAY,
        (_final, PAYMENT_REFUNDED): STAY,
        (_final, INVENTORY_RESERVED): STAY if _final is State.COMPLETED else LATE_RESERVATION,
        (_final, INVENTORY_RESERVATION_FAILED): STAY,
        (_final, TIMEOUT): STAY,
        (_final, STOCK_HELD): COMMIT_AGAIN if _final is State.COMPLETED else RELEASE_AGAIN,
        (_final, CANCEL): STAY,
    })


@dataclass(frozen=True)
class Decision:
    from_state: State
    to_state: State
    emits: tuple[str, ...]
    failure_reason: str | None

    @property
    def changed(self) -> bool:
        return self.from_state != self.to_state


def decide(state: State | str, message_type: str, *, failure_reason: str | None = None,
           message_reason: str | None = None) -> Decision:
    """What the saga does with `message_type` in `state`.

    `failure_reason` is the saga's current one; `message_reason` the one the message carries (a payment or
    reservation failure code, `timeout` or `cancelled`). Raises KeyError for a message the saga never hears.
    """
    state = State(state)
    transition = TABLE[(state, message_type)]
    reason = failure_reason
    if transition.records_failure:
        reason = message_reason
    to_state = state if transition.to_state is None else transition.to_state
    if to_state == FINISH_COMPENSATION:
        to_state = State.CANCELLED if reason == CANCELLED_REASON else State.FAILED
    return Decision(state, State(to_state), transition.emits, reason)
