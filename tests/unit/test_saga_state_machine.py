"""The saga page's state machine: drawn from the transition table, with one saga's path highlighted."""

from __future__ import annotations

import re

from saga.admin import START, TAKEN_STYLE, state_machine
from saga.diagram import arrows
from saga.transitions import State

FAILED_BY_TIMEOUT = [
    ("", "PAYMENT_PENDING"),
    ("PAYMENT_PENDING", "COMPENSATING"),
    ("COMPENSATING", "COMPENSATING"),
    ("COMPENSATING", "FAILED"),
]


def drawn_arrows(source: str) -> list[tuple[str, str]]:
    return re.findall(r"^    (\w+) -->(?:\|[^|]*\|)? (\w+)$", source, flags=re.MULTILINE)


def test_every_arrow_of_the_table_is_drawn_once_per_pair_of_states_and_every_state_is_a_node():
    source = state_machine([])

    pairs = drawn_arrows(source)
    table = {(a.from_state, a.to_state) for a in arrows()}
    assert set(pairs) == table | {(START, "PAYMENT_PENDING")}
    assert len(pairs) == len(set(pairs))
    for arrow in arrows():
        assert arrow.label in source, arrow
    for state in State:
        assert re.search(rf"^    {state.value}[\[(]", source, flags=re.MULTILINE), state
    assert "linkStyle" not in source and "class " not in source


def test_the_path_of_a_saga_lights_the_arrows_it_took_and_its_state_now():
    source = state_machine(FAILED_BY_TIMEOUT)

    pairs = drawn_arrows(source)
    styled = [
        int(i) for i in re.findall(rf"^    linkStyle (\d+) {re.escape(TAKEN_STYLE)}$", source, flags=re.MULTILINE)
    ]
    assert [pairs[i] for i in styled] == [
        (START, "PAYMENT_PENDING"),
        ("PAYMENT_PENDING", "COMPENSATING"),
        ("COMPENSATING", "COMPENSATING"),
        ("COMPENSATING", "FAILED"),
    ]
    assert "    class PAYMENT_PENDING,COMPENSATING visited" in source
    assert "    class FAILED current" in source
