"""The saga as a definition: the table generated from the order saga's steps is today's, pair for pair, and the
table generated for a saga of four steps keeps the same rules (reverse compensation, late replies undone,
repeats ignored, a way out of every state). Pure: no database, no broker.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from saga import diagram
from saga import transitions as t
from saga.definition import (
    FINISH_COMPENSATION,
    CompensateByCommand,
    DefinitionError,
    ReleasedOnFailure,
    SagaDefinition,
    Step,
    build_table,
    check,
    resolve,
)
from saga.steps import ORDER_SAGA
from tests.unit.test_transitions import EXPECTED, INPUTS

# A saga of four steps, three of them undone by a command and waiting for its reply: the shape of a product
# that adds a fraud check before the payment and a shipment after the stock.
FRAUD = Step(
    name="fraud",
    command="fraud.check",
    success="fraud.cleared",
    failures=("fraud.rejected",),
    pending_state="FRAUD_PENDING",
    deadline=5.0,
)
PAYMENT = dataclasses.replace(
    ORDER_SAGA.steps[0],
    compensation=CompensateByCommand(
        command="payment.refund",
        reply="payment.refunded",
        state="REFUNDING",
        resend_on_timeout=True,
        deadline="SAGA_COMPENSATION_DEADLINE_S",
    ),
)
INVENTORY = dataclasses.replace(
    ORDER_SAGA.steps[1],
    compensation=CompensateByCommand(
        command="inventory.release",
        reply="inventory.released",
        state="RELEASING",
        resend_on_timeout=True,
        deadline=30.0,
    ),
)
SHIPPING = Step(
    name="shipping",
    command="shipping.dispatch",
    success="shipping.dispatched",
    failures=("shipping.failed", "shipping.refused"),
    pending_state="SHIPPING_PENDING",
    deadline=60.0,
    compensation=CompensateByCommand(
        command="shipping.cancel",
        reply="shipping.cancelled",
        state="CANCELLING_SHIPMENT",
        resend_on_timeout=True,
        deadline=30.0,
    ),
)
FOUR_STEPS = dataclasses.replace(ORDER_SAGA, steps=(FRAUD, PAYMENT, INVENTORY, SHIPPING))


def _order_saga(*, resend_on_timeout: bool, held_input: str | None) -> SagaDefinition:
    """ORDER_SAGA with its refund sent again, or not, on the compensating state's deadline, and with the
    sweep's input for stock held after the end, or without, whatever saga.steps says today."""
    payment, inventory = ORDER_SAGA.steps
    refund = dataclasses.replace(payment.compensation, resend_on_timeout=resend_on_timeout)
    release = dataclasses.replace(inventory.compensation, held_input=held_input)
    return dataclasses.replace(
        ORDER_SAGA,
        steps=(dataclasses.replace(payment, compensation=refund), dataclasses.replace(inventory, compensation=release)),
    )


STOCK_HELD = "saga.stock_held"
ORDER_SAGA_DRIVEN = _order_saga(resend_on_timeout=True, held_input=STOCK_HELD)

# The product's two steps, with a shipment after them: inventory is still released on order.failed.
ORDER_AND_SHIPPING = dataclasses.replace(
    ORDER_SAGA,
    steps=(
        *ORDER_SAGA_DRIVEN.steps,
        dataclasses.replace(
            SHIPPING, compensation=dataclasses.replace(SHIPPING.compensation, state="COMPENSATING_SHIPPING")
        ),
    ),
)


def _command_compensations(definition: SagaDefinition) -> list[CompensateByCommand]:
    return [s.compensation for s in definition.steps if isinstance(s.compensation, CompensateByCommand)]


DEFINITIONS = {
    "order": ORDER_SAGA,
    "four_steps": FOUR_STEPS,
    "order_and_shipping": ORDER_AND_SHIPPING,
    "order_driven": ORDER_SAGA_DRIVEN,
}
# The definitions whose every compensation is sent again on its deadline: no state waits forever.
RESENDING = {name: d for name, d in DEFINITIONS.items() if all(c.resend_on_timeout for c in _command_compensations(d))}


def _cell(transition) -> tuple:
    """What a cell does; the note is documentation and may differ."""
    return transition.to_state, transition.emits, transition.records_failure


class SagaRun:
    """One saga fed message by message through a generated table, as saga_apply does."""

    def __init__(self, definition: SagaDefinition):
        self.definition = definition
        self.table = build_table(definition)
        self.state = definition.start_state
        self.reason: str | None = None
        self.sent: list[str] = [definition.first_command]

    def hear(self, message: str, reason: str | None = None) -> tuple[str, ...]:
        transition = self.table[(self.state, message)]
        self.state, self.reason = resolve(
            self.definition, self.state, transition, failure_reason=self.reason, message_reason=reason
        )
        self.sent += transition.emits
        return transition.emits

    def answer_compensations(self) -> list[str]:
        """Answer each compensation the saga sends with its reply until it sends none; returns them in order."""
        replies = {c.command: c.reply for c in _command_compensations(self.definition)}
        answered, pending = [], [m for m in self.sent[-1:] if m in replies]
        while pending:
            command = pending.pop(0)
            answered.append(command)
            pending += [m for m in self.hear(replies[command]) if m in replies]
        return answered

    def succeed(self, steps: int) -> None:
        for step in self.definition.steps[:steps]:
            self.hear(step.success)


class TestTheOrderSagaGivesTodaysTable:
    def test_the_states_and_inputs_are_todays_in_todays_order(self):
        assert ORDER_SAGA.states == (
            "PAYMENT_PENDING",
            "INVENTORY_PENDING",
            "COMPENSATING",
            "COMPLETED",
            "FAILED",
            "CANCELLED",
        )
        assert ORDER_SAGA.pending_states == ("PAYMENT_PENDING", "INVENTORY_PENDING")
        assert ORDER_SAGA.compensating_states == ORDER_SAGA.resending_states == ("COMPENSATING",)
        assert ORDER_SAGA.final_states == ("COMPLETED", "FAILED", "CANCELLED")
        assert ORDER_SAGA.inputs == INPUTS
        assert ORDER_SAGA.replies == INPUTS[:5]
        assert ORDER_SAGA.first_command == "payment.process"

    def test_the_failure_reason_is_recorded_where_a_step_fails_times_out_or_is_cancelled(self):
        # What EXPECTED does not say: which messages' reasons become the saga's.
        recording = {pair for pair, transition in build_table(ORDER_SAGA).items() if transition.records_failure}

        assert recording == {
            ("PAYMENT_PENDING", "payment.failed"),
            ("PAYMENT_PENDING", "saga.timeout"),
            ("PAYMENT_PENDING", "saga.cancel"),
            ("INVENTORY_PENDING", "inventory.reservation_failed"),
            ("INVENTORY_PENDING", "saga.timeout"),
            ("INVENTORY_PENDING", "saga.cancel"),
        }

    def test_saga_transitions_is_the_generated_table_keyed_by_state(self):
        assert t.TABLE == build_table(ORDER_SAGA)
        assert all(isinstance(state, t.State) for state, _ in t.TABLE)

    @pytest.mark.parametrize(("state", "message"), list(EXPECTED), ids=[f"{s.value}+{m}" for s, m in EXPECTED])
    def test_every_pair_gives_the_hand_written_expectation(self, state, message):
        # The same call as the oracle's own test: a compensating saga failed for a reason of its own.
        transition = build_table(ORDER_SAGA)[(state, message)]
        to_state, _ = resolve(
            ORDER_SAGA,
            state,
            transition,
            message_reason="some_code",
            failure_reason="out_of_stock" if state is t.State.COMPENSATING else None,
        )

        assert (to_state, transition.emits) == EXPECTED[(state, message)]

    def test_the_messages_it_sends_are_todays(self):
        emitted = {m for transition in build_table(ORDER_SAGA).values() for m in transition.emits}

        assert set(ORDER_SAGA.emitted) == emitted | {ORDER_SAGA.first_command}
        assert set(ORDER_SAGA.emitted) == {
            "payment.process",
            "payment.refund",
            "inventory.reserve",
            "inventory.release",
            "order.completed",
            "order.failed",
        }

    def test_the_deadlines_name_the_settings_that_state_deadline_s_reads(self, settings):
        from saga.models import state_deadline_s

        settings.SAGA_PAYMENT_DEADLINE_S, settings.SAGA_INVENTORY_DEADLINE_S = 11.0, 22.0
        settings.SAGA_COMPENSATION_DEADLINE_S = 33.0

        assert {state: state_deadline_s(state) for state in ORDER_SAGA.states} == {
            "PAYMENT_PENDING": 11.0,
            "INVENTORY_PENDING": 22.0,
            "COMPENSATING": 33.0,
            "COMPLETED": None,
            "FAILED": None,
            "CANCELLED": None,
        }

    def test_resending_the_refund_on_timeout_changes_that_one_pair(self):
        waiting, resending = (
            build_table(_order_saga(resend_on_timeout=flag, held_input=None)) for flag in (False, True)
        )

        changed = {pair for pair in waiting if _cell(waiting[pair]) != _cell(resending[pair])}

        assert changed == {(t.State.COMPENSATING, t.TIMEOUT)}
        assert _cell(waiting[(t.State.COMPENSATING, t.TIMEOUT)]) == (None, (), False)
        assert _cell(resending[(t.State.COMPENSATING, t.TIMEOUT)]) == (None, (t.PAYMENT_REFUND,), False)

    def test_the_stock_held_input_asks_a_failed_saga_for_its_release_again(self):
        without, held = (_order_saga(resend_on_timeout=False, held_input=h) for h in (None, STOCK_HELD))
        table = build_table(held)

        assert held.inputs == (*without.inputs[:-1], STOCK_HELD, without.inputs[-1])  # before saga.cancel
        assert {pair: _cell(cell) for pair, cell in table.items() if pair[1] != STOCK_HELD} == {
            pair: _cell(cell) for pair, cell in build_table(without).items()
        }
        assert {state: table[(state, STOCK_HELD)].emits for state in held.states} == {
            "PAYMENT_PENDING": (),
            "INVENTORY_PENDING": (),
            "COMPENSATING": (),  # its release has gone out; the end re-asks if it was lost
            "COMPLETED": (),  # a completed order keeps the stock it took
            "FAILED": ("inventory.release",),
            "CANCELLED": ("inventory.release",),
        }


class TestAFourStepSaga:
    def test_its_states_are_one_pending_per_step_and_one_compensating_per_command_compensation(self):
        assert FOUR_STEPS.states == (
            "FRAUD_PENDING",
            "PAYMENT_PENDING",
            "INVENTORY_PENDING",
            "SHIPPING_PENDING",
            "REFUNDING",
            "RELEASING",
            "CANCELLING_SHIPMENT",
            "COMPLETED",
            "FAILED",
            "CANCELLED",
        )

    def test_it_completes_only_after_every_step(self):
        run = SagaRun(FOUR_STEPS)

        for step, following in itertools.pairwise(FOUR_STEPS.steps):
            assert run.hear(step.success) == (following.command,)
            assert run.state == following.pending_state

        assert run.hear(SHIPPING.success) == (FOUR_STEPS.completed_event,)
        assert run.state == "COMPLETED"
        assert run.sent == [
            "fraud.check",
            "payment.process",
            "inventory.reserve",
            "shipping.dispatch",
            "order.completed",
        ]

    def test_only_the_last_steps_success_sends_the_completion_event(self):
        table = build_table(FOUR_STEPS)

        sending = [pair for pair, cell in table.items() if FOUR_STEPS.completed_event in cell.emits]

        assert sending == [("SHIPPING_PENDING", "shipping.dispatched")]

    @pytest.mark.parametrize("failure", SHIPPING.failures)
    def test_a_failure_in_the_last_step_compensates_the_earlier_steps_in_reverse_order(self, failure):
        # given a saga whose first three steps succeeded
        run = SagaRun(FOUR_STEPS)
        run.succeed(3)

        # when shipping fails, and each compensation is answered
        run.hear(failure, reason="no_carrier")
        undone = run.answer_compensations()

        # then the stock is released, then the payment refunded, each after the reply to the one before
        assert undone == ["inventory.release", "payment.refund"]
        assert run.sent[-1] == "order.failed"
        assert (run.state, run.reason) == ("FAILED", "no_carrier")

    def test_the_next_compensation_waits_for_the_reply_to_the_one_before(self):
        run = SagaRun(FOUR_STEPS)
        run.succeed(3)
        run.hear("shipping.failed", reason="no_carrier")

        # The refund's reply, or a repeated failure, before the release's does not move the saga on.
        assert run.hear("payment.refunded") == ()
        assert run.hear("shipping.failed") == ()
        assert run.state == "RELEASING"

    @pytest.mark.parametrize("stop", ["saga.timeout", "saga.cancel"])
    def test_a_timeout_or_cancel_of_the_last_step_compensates_it_too(self, stop):
        run = SagaRun(FOUR_STEPS)
        run.succeed(3)

        run.hear(stop, reason="cancelled" if stop == "saga.cancel" else "timeout")

        assert run.answer_compensations() == ["shipping.cancel", "inventory.release", "payment.refund"]
        assert run.state == ("CANCELLED" if stop == "saga.cancel" else "FAILED")

    def test_a_late_success_while_compensating_is_undone_again(self):
        # given a shipment that timed out and whose cancel was sent
        run = SagaRun(FOUR_STEPS)
        run.succeed(3)
        run.hear("saga.timeout", reason="timeout")

        # when the shipment's success arrives late, then it is cancelled again, and the saga still waits
        assert run.hear("shipping.dispatched") == ("shipping.cancel",)
        assert run.state == "CANCELLING_SHIPMENT"
        # and a late success of a step whose turn has not come is a repeat: its turn comes
        assert run.hear("payment.processed") == ()

    @pytest.mark.parametrize(
        ("step", "undo"), [(PAYMENT, "payment.refund"), (INVENTORY, "inventory.release"), (SHIPPING, "shipping.cancel")]
    )
    @pytest.mark.parametrize("ended", ["FAILED", "CANCELLED"])
    def test_a_late_success_after_the_end_is_undone(self, step, undo, ended):
        transition = build_table(FOUR_STEPS)[(ended, step.success)]

        assert _cell(transition) == (None, (undo,), False)

    def test_a_late_success_after_the_saga_completed_is_a_repeat(self):
        table = build_table(FOUR_STEPS)

        assert all(not table[("COMPLETED", m)].emits for m in FOUR_STEPS.inputs)

    @pytest.mark.parametrize("index", range(len(FOUR_STEPS.steps)))
    def test_a_failure_reply_undoes_only_the_steps_before_the_failing_one(self, index):
        run = SagaRun(FOUR_STEPS)
        run.succeed(index)

        run.hear(FOUR_STEPS.steps[index].failures[0], reason="refused")

        expected = [s.compensation.command for s in reversed(FOUR_STEPS.steps[:index]) if s.compensation]
        assert run.answer_compensations() == expected
        assert (run.state, run.sent[-1]) == ("FAILED", "order.failed")

    def test_a_step_the_saga_releases_is_released_as_the_compensation_starts(self):
        run = SagaRun(ORDER_AND_SHIPPING)
        run.succeed(2)

        run.hear("shipping.refused", reason="no_carrier")

        assert run.answer_compensations() == ["payment.refund"]
        assert run.sent[-3:] == ["inventory.release", "payment.refund", "order.failed"]
        # a reservation reported while the refund is awaited is released again
        assert run.table[("COMPENSATING", "inventory.reserved")].emits == ("inventory.release",)

    def test_a_step_the_saga_releases_waits_for_the_later_steps_compensation(self):
        run = SagaRun(ORDER_AND_SHIPPING)
        run.succeed(2)

        run.hear("saga.timeout", reason="timeout")  # the shipment may have gone out: cancel it first

        assert run.sent[-1:] == ["shipping.cancel"]
        assert run.hear("shipping.cancelled") == ("inventory.release", "payment.refund")

    def test_a_step_released_on_the_failure_event_is_released_by_it_at_the_end(self):
        on_event = _with_inventory_released_on_the_failure_event(ORDER_AND_SHIPPING)
        run = SagaRun(on_event)
        run.succeed(2)

        run.hear("shipping.refused", reason="no_carrier")

        assert run.answer_compensations() == ["payment.refund"]
        assert run.sent[-2:] == ["payment.refund", "order.failed"]  # inventory releases on order.failed
        # a reservation reported while the refund is awaited is left to order.failed, still to come
        assert run.table[("COMPENSATING", "inventory.reserved")].emits == ()
        # and a completed saga whose stock is still held sends its completion event again
        assert run.table[("COMPLETED", STOCK_HELD)].emits == ("order.completed",)


def _with_inventory_released_on_the_failure_event(definition: SagaDefinition) -> SagaDefinition:
    """`definition` with its inventory step undone by its participant on order.failed, as before 2026-12."""
    steps = tuple(
        dataclasses.replace(step, compensation=dataclasses.replace(step.compensation, sent_by_saga=False))
        if isinstance(step.compensation, ReleasedOnFailure)
        else step
        for step in definition.steps
    )
    return dataclasses.replace(definition, steps=steps)


@pytest.mark.parametrize("definition", list(DEFINITIONS.values()), ids=list(DEFINITIONS))
class TestInvariantsOfEveryGeneratedTable:
    def test_the_table_is_total_over_states_and_inputs(self, definition):
        assert set(build_table(definition)) == set(itertools.product(definition.states, definition.inputs))

    def test_every_message_sent_has_a_step_and_every_compensation_a_reply_the_saga_hears(self, definition):
        sent = {m for cell in build_table(definition).values() for m in cell.emits}

        assert sent | {definition.first_command} == set(definition.emitted)
        assert {c.reply for c in _command_compensations(definition)} <= set(definition.inputs)

    def test_every_state_is_reachable_from_the_start(self, definition):
        assert _reachable(definition, definition.start_state) == set(definition.states)

    def test_every_state_can_finish(self, definition):
        for state in definition.states:
            assert _reachable(definition, state) & set(definition.final_states), state

    def test_no_message_moves_a_saga_out_of_a_final_state(self, definition):
        table = build_table(definition)

        for final, message in itertools.product(definition.final_states, definition.inputs):
            assert not table[(final, message)].changes_state, (final, message)

    def test_a_reply_applied_twice_has_no_second_effect(self, definition):
        table = build_table(definition)
        replies = set(definition.inputs) - {definition.timeout, definition.cancel, *definition.held_inputs}

        for (state, message), cell in table.items():
            if message in replies and cell.changes_state:
                for after in _targets(definition, cell.to_state):
                    assert _cell(table[(after, message)]) == (None, (), False), (state, message, after)

    def test_only_a_failure_reply_a_timeout_or_a_cancel_records_the_sagas_failure_reason(self, definition):
        failing = {f for s in definition.steps for f in s.failures} | {definition.timeout, definition.cancel}

        for (state, message), cell in build_table(definition).items():
            if cell.records_failure:
                assert message in failing and state in definition.pending_states, (state, message)


@pytest.mark.parametrize("definition", list(RESENDING.values()), ids=list(RESENDING))
def test_every_non_final_state_has_a_way_out_through_the_timeout(definition):
    """The timeout moves the saga on, or sends again the compensation whose reply does."""
    replies = {c.command: c.reply for c in _command_compensations(definition)}
    for state in set(definition.states) - set(definition.final_states):
        run = SagaRun(definition)
        run.state = state
        while run.state not in definition.final_states:
            before = run.state
            resent = [m for m in run.hear(definition.timeout, reason="timeout") if m in replies]
            if run.state == before:
                assert resent, f"the timeout does nothing in {before}"
                run.hear(replies[resent[0]])
                assert run.state != before, f"the reply to {resent[0]} does not move {before} on"
        assert run.state == definition.failed_state, state


def _targets(definition: SagaDefinition, to_state: str) -> set[str]:
    if to_state == FINISH_COMPENSATION:
        return {definition.failed_state, definition.cancelled_state}
    return {to_state}


def _reachable(definition: SagaDefinition, start: str) -> set[str]:
    table = build_table(definition)
    seen, frontier = {start}, [start]
    while frontier:
        state = frontier.pop()
        for message in definition.inputs:
            to_state = table[(state, message)].to_state
            for found in _targets(definition, to_state) if to_state else ():
                if found not in seen:
                    seen.add(found)
                    frontier.append(found)
    return seen


class TestDefinitionChecks:
    def test_a_saga_needs_a_step(self):
        with pytest.raises(DefinitionError, match="at least one step"):
            check(dataclasses.replace(ORDER_SAGA, steps=()))

    def test_two_steps_may_not_share_a_state(self):
        clash = dataclasses.replace(SHIPPING, pending_state="PAYMENT_PENDING")

        with pytest.raises(DefinitionError, match="state named more than once: PAYMENT_PENDING"):
            build_table(dataclasses.replace(ORDER_SAGA, steps=(*ORDER_SAGA.steps, clash)))

    def test_two_steps_may_not_share_a_reply(self):
        clash = dataclasses.replace(SHIPPING, failures=("payment.failed",))

        with pytest.raises(DefinitionError, match="input named more than once: payment.failed"):
            build_table(dataclasses.replace(ORDER_SAGA, steps=(*ORDER_SAGA.steps, clash)))

    def test_a_message_may_not_be_both_heard_and_sent(self):
        clash = dataclasses.replace(SHIPPING, success="inventory.release")

        with pytest.raises(DefinitionError, match="both heard and sent by the saga: inventory.release"):
            build_table(dataclasses.replace(ORDER_SAGA, steps=(*ORDER_SAGA.steps, clash)))

    def test_a_step_released_on_failure_needs_no_reply(self):
        released = ReleasedOnFailure(late_command="shipping.cancel")
        definition = dataclasses.replace(ORDER_SAGA, steps=(dataclasses.replace(SHIPPING, compensation=released),))

        assert definition.inputs == (
            "shipping.dispatched",
            "shipping.failed",
            "shipping.refused",
            "saga.timeout",
            "saga.cancel",
        )


class TestStateDiagram:
    def test_a_one_step_saga_reads_as_its_table(self):
        waiting = _order_saga(resend_on_timeout=False, held_input=None)
        one = dataclasses.replace(waiting, steps=waiting.steps[:1])

        assert diagram.mermaid(one) == (
            "stateDiagram-v2\n"
            "    [*] --> PAYMENT_PENDING\n"
            "    PAYMENT_PENDING --> COMPENSATING: saga.cancel, saga.timeout / payment.refund\n"
            "    PAYMENT_PENDING --> COMPLETED: payment.processed / order.completed\n"
            "    PAYMENT_PENDING --> FAILED: payment.failed / order.failed\n"
            "    COMPENSATING --> COMPENSATING: payment.processed / payment.refund\n"
            "    COMPENSATING --> FAILED: payment.refunded [not cancelled] / order.failed\n"
            "    COMPENSATING --> CANCELLED: payment.refunded [cancelled] / order.failed\n"
            "    FAILED --> FAILED: payment.processed / payment.refund\n"
            "    CANCELLED --> CANCELLED: payment.processed / payment.refund\n"
            "    COMPLETED --> [*]\n"
            "    FAILED --> [*]\n"
            "    CANCELLED --> [*]\n"
        )

    def test_every_change_of_state_of_the_four_step_saga_is_an_edge(self):
        source = diagram.mermaid(FOUR_STEPS)

        for (state, message), cell in build_table(FOUR_STEPS).items():
            if cell.changes_state:
                for to_state in _targets(FOUR_STEPS, cell.to_state):
                    assert any(
                        line.startswith(f"    {state} --> {to_state}: ") and message in line
                        for line in source.splitlines()
                    ), (state, message)
