"""The order saga's transition table, generated from its definition (`saga.steps.ORDER_SAGA`). No Django here.

`decide(state, message_type)` gives what the order saga does with a message in a state: the next state, the
messages to emit, and whether the message's failure reason becomes the saga's. Every pair of a state and a
message the saga hears has an entry, late and repeated replies included, so nothing is dropped silently.
The names below are the order saga's; the services read the definition in use (`saga.steps.active()`).
"""

from __future__ import annotations

from enum import StrEnum

from saga.definition import FINISH_COMPENSATION, STAY, Decision, Transition
from saga.definition import decide as decide_in
from saga.steps import INVENTORY, ORDER_SAGA, PAYMENT

__all__ = ["FINISH_COMPENSATION", "STAY", "Decision", "Transition"]  # re-exported: the product's names for them

# The order saga's states, in the definition's order: its pending states, its compensating state, its ends.
State = StrEnum("State", [(name, name) for name in ORDER_SAGA.states])  # type: ignore[misc]

FINAL_STATES = frozenset(State(name) for name in ORDER_SAGA.final_states)
PENDING_STATES = frozenset(State(name) for name in ORDER_SAGA.pending_states)

# Messages the saga hears. The last three are not on the wire: the sweep and the cancel API raise them.
PAYMENT_PROCESSED = PAYMENT.success
(PAYMENT_FAILED,) = PAYMENT.failures
PAYMENT_REFUNDED = PAYMENT.compensation.reply  # type: ignore[union-attr]
INVENTORY_RESERVED = INVENTORY.success
(INVENTORY_RESERVATION_FAILED,) = INVENTORY.failures
# The sweep raises TIMEOUT when a saga is past the deadline of its state: a pending step did not answer, or
# the refund of a compensation did not. It raises STOCK_HELD when a saga that ended still has stock reserved
# for it past its deadline: the release (or the commit) that its end asked for was lost.
TIMEOUT = ORDER_SAGA.timeout
STOCK_HELD = INVENTORY.compensation.held_input  # type: ignore[union-attr]
CANCEL = ORDER_SAGA.cancel
INPUTS = ORDER_SAGA.inputs

# Messages the saga emits.
PAYMENT_PROCESS = PAYMENT.command
PAYMENT_REFUND = PAYMENT.compensation.command  # type: ignore[union-attr]
INVENTORY_RESERVE = INVENTORY.command
INVENTORY_RELEASE = INVENTORY.compensation.late_command  # type: ignore[union-attr]
ORDER_COMPLETED = ORDER_SAGA.completed_event
ORDER_FAILED = ORDER_SAGA.failed_event

CANCELLED_REASON = ORDER_SAGA.cancelled_reason

# Keyed by State, as the tests and the diagram read it; the services read the definition's own table.
TABLE: dict[tuple[State, str], Transition] = {
    (State(state), message): transition for (state, message), transition in ORDER_SAGA.table.items()
}


def decide(
    state: State | str, message_type: str, *, failure_reason: str | None = None, message_reason: str | None = None
) -> Decision:
    """What the order saga does with `message_type` in `state`, its states given as `State`.

    `failure_reason` is the saga's current one; `message_reason` the one the message carries (a payment or
    reservation failure code, `timeout` or `cancelled`). Raises ValueError for an unknown state, KeyError
    for a message the saga never hears.
    """
    decision = decide_in(
        ORDER_SAGA, State(state), message_type, failure_reason=failure_reason, message_reason=message_reason
    )
    return Decision(State(decision.from_state), State(decision.to_state), decision.emits, decision.failure_reason)
