"""The saga's transition table (DESIGN §1), read as a table of expectations, and the table's own invariants.

The expectations are written out by hand; the table is generated from the order saga's steps (saga.steps).
`saga.transitions` is pure: no database here. Only the handler-coverage test needs Django's apps, because
`messaging.bus.registry()` reads the handlers each installed app gives.
"""

from __future__ import annotations

import itertools

import pytest

from saga import transitions as t
from saga.transitions import State

PP = State.PAYMENT_PENDING
IP = State.INVENTORY_PENDING
COMP = State.COMPENSATING
DONE = State.COMPLETED
FAILED = State.FAILED
CANCELLED = State.CANCELLED

# Written out, not read from saga.transitions: the table there is generated from saga.steps, and the
# oracle must not move with it.
PROCESSED = "payment.processed"
PAY_FAILED = "payment.failed"
REFUNDED = "payment.refunded"
RESERVED = "inventory.reserved"
RES_FAILED = "inventory.reservation_failed"
TIMEOUT = "saga.timeout"
STOCK_HELD = "saga.stock_held"
CANCEL = "saga.cancel"
INPUTS = (PROCESSED, PAY_FAILED, REFUNDED, RESERVED, RES_FAILED, TIMEOUT, STOCK_HELD, CANCEL)

NOTHING: tuple[str, ...] = ()
REFUND = ("payment.refund",)
RELEASE = ("inventory.release",)
COMPLETE = ("order.completed",)
RELEASE_AND_REFUND = ("inventory.release", "payment.refund")
RESERVE = ("inventory.reserve",)
FAIL = ("order.failed",)

# (state, message) -> (next state, messages emitted), written out by hand from DESIGN §1.
# COMPENSATING + payment.refunded ends FAILED for any reason but `cancelled`; see the tests below.
EXPECTED: dict[tuple[State, str], tuple[State, tuple[str, ...]]] = {
    # The happy path and its direct failures.
    (PP, PROCESSED): (IP, RESERVE),
    (PP, PAY_FAILED): (FAILED, FAIL),
    (PP, REFUNDED): (PP, NOTHING),
    (PP, RESERVED): (PP, NOTHING),
    (PP, RES_FAILED): (PP, NOTHING),
    (PP, TIMEOUT): (COMP, REFUND),
    (PP, STOCK_HELD): (PP, NOTHING),
    (PP, CANCEL): (COMP, REFUND),
    (IP, PROCESSED): (IP, NOTHING),
    (IP, PAY_FAILED): (IP, NOTHING),
    (IP, REFUNDED): (IP, NOTHING),
    (IP, RESERVED): (DONE, COMPLETE),
    (IP, RES_FAILED): (COMP, REFUND),
    # The reservation may have taken the stock: the saga releases it as it starts to refund.
    (IP, TIMEOUT): (COMP, RELEASE_AND_REFUND),
    (IP, STOCK_HELD): (IP, NOTHING),
    (IP, CANCEL): (COMP, RELEASE_AND_REFUND),
    # A charge that lands while compensating is refunded again (a repeated refund is a no-op at payments).
    (COMP, PROCESSED): (COMP, REFUND),
    (COMP, PAY_FAILED): (COMP, NOTHING),
    (COMP, REFUNDED): (FAILED, FAIL),
    # Stock taken after the release went out is released again (a repeated release is a no-op).
    (COMP, RESERVED): (COMP, RELEASE),
    (COMP, RES_FAILED): (COMP, NOTHING),
    # No payment.refunded before the deadline: the refund, or its answer, was lost. Refund again.
    (COMP, TIMEOUT): (COMP, REFUND),
    (COMP, STOCK_HELD): (COMP, NOTHING),
    (COMP, CANCEL): (COMP, NOTHING),
    # Final states: repeats are no-ops, late money or stock is given back; stock still held long after a
    # failure (its release was lost) is asked for again. A completed order keeps what it took.
    (DONE, PROCESSED): (DONE, NOTHING),
    (DONE, PAY_FAILED): (DONE, NOTHING),
    (DONE, REFUNDED): (DONE, NOTHING),
    (DONE, RESERVED): (DONE, NOTHING),
    (DONE, RES_FAILED): (DONE, NOTHING),
    (DONE, TIMEOUT): (DONE, NOTHING),
    (DONE, STOCK_HELD): (DONE, NOTHING),
    (DONE, CANCEL): (DONE, NOTHING),
    (FAILED, PROCESSED): (FAILED, REFUND),
    (FAILED, PAY_FAILED): (FAILED, NOTHING),
    (FAILED, REFUNDED): (FAILED, NOTHING),
    (FAILED, RESERVED): (FAILED, RELEASE),
    (FAILED, RES_FAILED): (FAILED, NOTHING),
    (FAILED, TIMEOUT): (FAILED, NOTHING),
    (FAILED, STOCK_HELD): (FAILED, RELEASE),
    (FAILED, CANCEL): (FAILED, NOTHING),
    (CANCELLED, PROCESSED): (CANCELLED, REFUND),
    (CANCELLED, PAY_FAILED): (CANCELLED, NOTHING),
    (CANCELLED, REFUNDED): (CANCELLED, NOTHING),
    (CANCELLED, RESERVED): (CANCELLED, RELEASE),
    (CANCELLED, RES_FAILED): (CANCELLED, NOTHING),
    (CANCELLED, TIMEOUT): (CANCELLED, NOTHING),
    (CANCELLED, STOCK_HELD): (CANCELLED, RELEASE),
    (CANCELLED, CANCEL): (CANCELLED, NOTHING),
}


@pytest.mark.parametrize(("state", "message"), list(EXPECTED), ids=[f"{s.value}+{m}" for s, m in EXPECTED])
def test_each_state_and_message_gives_the_expected_next_state_and_messages(state, message):
    expected_state, expected_emits = EXPECTED[(state, message)]

    decision = t.decide(
        state, message, failure_reason="out_of_stock" if state is COMP else None, message_reason="some_code"
    )

    assert (decision.from_state, decision.to_state, decision.emits) == (state, expected_state, expected_emits)
    assert decision.changed == (expected_state != state)


def test_the_expectations_cover_every_state_and_message_the_saga_hears():
    states = ["PAYMENT_PENDING", "INVENTORY_PENDING", "COMPENSATING", "COMPLETED", "FAILED", "CANCELLED"]

    assert [state.value for state in State] == states
    assert t.INPUTS == INPUTS
    assert set(EXPECTED) == set(itertools.product(states, INPUTS))


def test_the_table_is_total_over_states_and_inputs():
    assert set(t.TABLE) == set(itertools.product(State, t.INPUTS))


def _successors(state: State) -> set[State]:
    """States reachable in one step; FINISH_COMPENSATION may end in FAILED or CANCELLED."""
    found = set()
    for message in t.INPUTS:
        to_state = t.TABLE[(state, message)].to_state
        if to_state is None:
            found.add(state)
        elif to_state == t.FINISH_COMPENSATION:
            found |= {FAILED, CANCELLED}
        else:
            found.add(State(to_state))
    return found


def _reachable_from(start: State) -> set[State]:
    seen, frontier = {start}, [start]
    while frontier:
        for nxt in _successors(frontier.pop()) - seen:
            seen.add(nxt)
            frontier.append(nxt)
    return seen


@pytest.mark.parametrize("state", sorted(set(State) - t.FINAL_STATES))
def test_every_non_final_state_has_a_way_out_to_a_final_state(state):
    assert _reachable_from(state) & t.FINAL_STATES, f"{state} can never finish"
    assert any(t.TABLE[(state, m)].changes_state for m in t.INPUTS), f"{state} has no transition out"


COMPENSATIONS = {t.PAYMENT_REFUND, t.INVENTORY_RELEASE}
# What a participant answers to each message the saga sends, as far as the saga hears it.
ANSWER_TO = {t.PAYMENT_REFUND: REFUNDED, t.INVENTORY_RESERVE: RESERVED}


@pytest.mark.parametrize("state", sorted(set(State) - t.FINAL_STATES))
def test_the_sweeps_timeout_moves_every_non_final_state_on_or_sends_its_compensation_again(state):
    transition = t.TABLE[(state, TIMEOUT)]

    assert transition.changes_state or set(transition.emits) & COMPENSATIONS, (
        f"{state} stays put on {TIMEOUT} and sends nothing: a lost message leaves it there for ever"
    )


@pytest.mark.parametrize("state", sorted(set(State) - t.FINAL_STATES))
def test_the_sweeps_timeouts_and_the_answer_to_the_last_send_finish_every_non_final_state(state):
    # given a saga whose earlier messages were all lost: only the answer to its latest send arrives
    reason = None
    for _ in range(len(State)):
        decision = t.decide(state, TIMEOUT, failure_reason=reason, message_reason="timeout")
        state, reason = decision.to_state, decision.failure_reason
        answers = [ANSWER_TO[key] for key in decision.emits[-1:] if key in ANSWER_TO]
        for answer in answers:
            state = t.decide(state, answer, failure_reason=reason).to_state
        if state in t.FINAL_STATES:
            break

    # then the timeouts and that one answer finish it
    assert state in t.FINAL_STATES


@pytest.mark.parametrize(("state", "again"), [(DONE, NOTHING), (FAILED, RELEASE), (CANCELLED, RELEASE)])
def test_stock_still_held_after_the_end_is_asked_for_again_and_nothing_else_changes(state, again):
    decision = t.decide(state, STOCK_HELD, failure_reason="out_of_stock", message_reason="other")

    assert (decision.to_state, decision.emits, decision.failure_reason) == (state, again, "out_of_stock")


def test_every_state_is_reachable_from_the_start():
    assert _reachable_from(PP) == set(State)


@pytest.mark.parametrize("state", sorted(t.FINAL_STATES))
def test_no_message_moves_a_saga_out_of_a_final_state(state):
    for message in t.INPUTS:
        assert t.decide(state, message).to_state == state, message


@pytest.mark.parametrize(
    ("state", "repeated_reply"),
    [
        (DONE, PROCESSED),
        (DONE, RESERVED),
        (FAILED, PAY_FAILED),
        (FAILED, REFUNDED),
        (FAILED, RES_FAILED),
        (CANCELLED, REFUNDED),
    ],
)
def test_a_repeated_reply_in_a_final_state_is_a_no_op(state, repeated_reply):
    decision = t.decide(state, repeated_reply, failure_reason="out_of_stock", message_reason="other_code")

    assert not decision.changed
    assert decision.emits == ()
    assert decision.failure_reason == "out_of_stock"


def test_finishing_compensation_of_a_cancelled_order_ends_cancelled():
    decision = t.decide(COMP, REFUNDED, failure_reason=t.CANCELLED_REASON)

    assert decision.to_state == CANCELLED
    assert decision.emits == (t.ORDER_FAILED,)
    assert decision.failure_reason == "cancelled"


@pytest.mark.parametrize("reason", ["timeout", "out_of_stock", "unknown_sku", None])
def test_finishing_compensation_for_any_other_reason_ends_failed(reason):
    decision = t.decide(COMP, REFUNDED, failure_reason=reason)

    assert decision.to_state == FAILED
    assert decision.failure_reason == reason


def test_the_refund_reply_does_not_overwrite_the_reason_compensation_started_with():
    decision = t.decide(COMP, REFUNDED, failure_reason="timeout", message_reason="something_else")

    assert decision.failure_reason == "timeout"


@pytest.mark.parametrize(
    ("state", "message", "reason"),
    [
        (PP, PAY_FAILED, "insufficient_funds"),
        (PP, TIMEOUT, "timeout"),
        (PP, CANCEL, "cancelled"),
        (IP, RES_FAILED, "out_of_stock"),
        (IP, TIMEOUT, "timeout"),
    ],
)
def test_a_failing_step_records_the_messages_reason_as_the_sagas(state, message, reason):
    assert t.decide(state, message, message_reason=reason).failure_reason == reason


def test_a_successful_step_keeps_no_failure_reason():
    assert t.decide(PP, PROCESSED, message_reason="ignored").failure_reason is None
    assert t.decide(IP, RESERVED, message_reason="ignored").failure_reason is None


def test_cancel_then_refund_reads_as_a_cancelled_history():
    # given an order waiting for its payment, when it is cancelled and the refund is confirmed
    cancelled = t.decide(PP, CANCEL, message_reason=t.CANCELLED_REASON)
    refunded = t.decide(cancelled.to_state, REFUNDED, failure_reason=cancelled.failure_reason)

    # then it compensates, and ends CANCELLED with order.failed for the participants
    assert (cancelled.to_state, cancelled.emits) == (COMP, REFUND)
    assert (refunded.to_state, refunded.emits, refunded.failure_reason) == (CANCELLED, (t.ORDER_FAILED,), "cancelled")


def test_decide_accepts_a_state_given_as_its_string_value():
    assert t.decide("PAYMENT_PENDING", PROCESSED).to_state == IP


@pytest.mark.parametrize("message", ["order.created", "payment.process", "inventory.reserve", "nonsense"])
def test_decide_refuses_a_message_the_saga_never_hears(message):
    with pytest.raises(KeyError):
        t.decide(PP, message)


def test_decide_refuses_an_unknown_state():
    with pytest.raises(ValueError):
        t.decide("SHIPPED", PROCESSED)


def _emitted_by_the_saga() -> set[str]:
    emitted = {key for transition in t.TABLE.values() for key in transition.emits}
    return emitted | {t.PAYMENT_PROCESS}  # saga_start emits payment.process outside the table


def test_the_table_emits_the_compensations_design_asks_for():
    assert _emitted_by_the_saga() == {
        t.PAYMENT_PROCESS,
        t.PAYMENT_REFUND,
        t.INVENTORY_RESERVE,
        t.INVENTORY_RELEASE,
        t.ORDER_COMPLETED,
        t.ORDER_FAILED,
    }


class TestHandlerCoverage:
    """Every command the saga emits is handled exactly once, and every event it hears has a handler; its own
    final events are published for anyone who subscribes (webhooks are fanned out in its transaction)."""

    @pytest.fixture(autouse=True)
    def _registry(self, settings):
        # bus.registry() reads the installed apps' handlers, which needs Django set up; no database is touched.
        from messaging import bus

        self.registry = bus.registry()

    def _handlers_of(self, routing_key: str) -> list[str]:
        return [consumer for consumer, handlers in self.registry.items() if routing_key in handlers]

    @pytest.mark.parametrize("routing_key", sorted(_emitted_by_the_saga()))
    def test_every_emitted_message_is_in_the_catalogue_with_the_right_number_of_handlers(self, routing_key):
        from messaging.catalogue import CATALOGUE

        kind = CATALOGUE[routing_key].kind
        handlers = self._handlers_of(routing_key)
        if kind == "command":
            assert len(handlers) == 1, f"command {routing_key} handled by {handlers}"
        else:
            assert kind == "event"
            # The only events the saga emits are its final ones, which no participant needs.
            assert routing_key in {t.ORDER_COMPLETED, t.ORDER_FAILED}, f"event {routing_key}"
            assert "inventory" not in handlers

    @pytest.mark.parametrize("routing_key", sorted(set(t.INPUTS) - {t.TIMEOUT, t.STOCK_HELD, t.CANCEL}))
    def test_every_reply_the_table_knows_reaches_the_saga(self, routing_key):
        assert "saga" in self._handlers_of(routing_key)

    def test_the_saga_consumer_handles_no_message_the_table_does_not_know(self):
        assert set(self.registry["saga"]) <= set(t.INPUTS)

    def test_every_handled_message_is_in_the_catalogue(self):
        from messaging.catalogue import CATALOGUE

        for handlers in self.registry.values():
            assert set(handlers) <= set(CATALOGUE)
