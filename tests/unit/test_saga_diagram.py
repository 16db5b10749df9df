"""The saga's state diagram is drawn from the transition table: every move and every emitted compensation is an
arrow, and a change to the table changes the diagram."""

from __future__ import annotations

import re

import pytest

from saga import diagram
from saga import transitions as t
from saga.transitions import State

ARROW = re.compile(r"^    (\[\*\]|\w+) --> (\[\*\]|\w+)(?:: (.+))?$")


def parsed(source: str) -> list[tuple[str, str, set[str], str, set[str]]]:
    """(from, to, messages, condition, emitted) of each arrow line of Mermaid source."""
    lines = source.splitlines()
    assert lines[0] == "stateDiagram-v2"
    arrows = []
    for line in lines[1:]:
        match = ARROW.match(line)
        assert match, line
        source_state, target, labels = match.groups()
        for label in (labels or "").split(diagram.LABEL_SEPARATOR):
            messages, _, emitted = label.partition(" / ")
            condition = re.search(r" \[(.+)\]$", messages)
            messages = messages[: condition.start()] if condition else messages
            arrows.append(
                (
                    source_state,
                    target,
                    set(filter(None, messages.split(", "))),
                    condition.group(1) if condition else "",
                    set(filter(None, emitted.split(", "))),
                )
            )
    return arrows


def arrows_from(state: str, to: str) -> list[tuple[set[str], str, set[str]]]:
    return [(m, c, e) for f, t_, m, c, e in parsed(diagram.mermaid()) if (f, t_) == (state, to)]


def test_the_diagram_is_mermaid_state_diagram_source_with_every_state_and_one_line_for_each_pair():
    source = diagram.mermaid()

    assert source.startswith("stateDiagram-v2\n") and source.endswith("\n")
    pairs = [line.split(":")[0] for line in source.splitlines()[1:]]
    assert len(pairs) == len(set(pairs))
    named = {s for f, t_, *_ in parsed(source) for s in (f, t_)}
    assert named == {state.value for state in State} | {"[*]"}


def test_the_saga_starts_in_payment_pending_and_ends_in_each_final_state():
    arrows = parsed(diagram.mermaid())

    assert [(f, t_) for f, t_, *_ in arrows if f == "[*]"] == [("[*]", "PAYMENT_PENDING")]
    assert {f for f, t_, *_ in arrows if t_ == "[*]"} == {state.value for state in t.FINAL_STATES}


def test_the_happy_path_the_failure_the_timeout_and_the_cancel_are_drawn():
    assert arrows_from("PAYMENT_PENDING", "INVENTORY_PENDING") == [({"payment.processed"}, "", {"inventory.reserve"})]
    assert arrows_from("INVENTORY_PENDING", "COMPLETED") == [({"inventory.reserved"}, "", {"order.completed"})]
    assert arrows_from("PAYMENT_PENDING", "FAILED") == [({"payment.failed"}, "", {"order.failed"})]
    ((messages, _, emitted),) = arrows_from("PAYMENT_PENDING", "COMPENSATING")
    assert messages == {"saga.timeout", "saga.cancel"} and emitted == {"payment.refund"}
    # out of stock: nothing was taken, only the refund; timed out or cancelled: the stock may have been taken
    assert sorted(arrows_from("INVENTORY_PENDING", "COMPENSATING"), key=lambda arrow: len(arrow[2])) == [
        ({"inventory.reservation_failed"}, "", {"payment.refund"}),
        ({"saga.timeout", "saga.cancel"}, "", {"inventory.release", "payment.refund"}),
    ]


def test_compensation_ends_cancelled_for_a_cancelled_order_and_failed_otherwise():
    assert arrows_from("COMPENSATING", "CANCELLED") == [({"payment.refunded"}, "cancelled", {"order.failed"})]
    assert arrows_from("COMPENSATING", "FAILED") == [({"payment.refunded"}, "not cancelled", {"order.failed"})]


@pytest.mark.parametrize(
    ("state", "message", "compensation"),
    [
        ("COMPENSATING", "payment.processed", "payment.refund"),
        ("COMPENSATING", "inventory.reserved", "inventory.release"),
        ("FAILED", "payment.processed", "payment.refund"),
        ("FAILED", "inventory.reserved", "inventory.release"),
        ("CANCELLED", "payment.processed", "payment.refund"),
        ("CANCELLED", "inventory.reserved", "inventory.release"),
    ],
)
def test_a_late_reply_is_a_loop_with_its_compensation(state, message, compensation):
    loops = arrows_from(state, state)

    assert any(message in messages and emitted == {compensation} for messages, _, emitted in loops), loops


def test_every_pair_of_the_table_that_moves_or_emits_is_an_arrow_and_no_other():
    drawn = {
        (f, m, frozenset(e)) for f, t_, ms, c, e in parsed(diagram.mermaid()) if f != "[*]" and t_ != "[*]" for m in ms
    }
    expected = set()
    for state, message in t.TABLE:
        for reason in (t.CANCELLED_REASON, "out_of_stock"):
            decision = t.decide(state, message, failure_reason=reason, message_reason=reason)
            if decision.changed or decision.emits:
                expected.add((state.value, message, frozenset(decision.emits)))

    assert drawn == expected


def test_a_change_to_the_table_is_drawn(monkeypatch):
    # e.g. a compensating saga past its deadline asks for the refund again
    monkeypatch.setitem(t.TABLE, (State.COMPENSATING, t.TIMEOUT), t.Transition(None, (t.PAYMENT_REFUND,)))

    loops = arrows_from("COMPENSATING", "COMPENSATING")

    assert loops == [
        ({"inventory.reserved"}, "", {"inventory.release"}),
        ({"payment.processed", "saga.timeout"}, "", {"payment.refund"}),
    ]
