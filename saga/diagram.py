"""A saga's state diagram, drawn from its transition table as Mermaid `stateDiagram-v2`. Pure, like the table.

The one diagram of the product: the README, `manage.py contracts` and /api/messages draw the order saga's
(`saga.steps.ORDER_SAGA`, the default); any other definition is drawn the same way.

Every pair of a state and a message that moves the saga or emits a message is an arrow, labelled
`messages / emitted`. A reply compensated because it came too late is a loop on its state. A pair that does
neither (a duplicate, a reply the saga no longer waits for) is left out. Where the next state depends on why
the saga is compensating (a cancelled order ends CANCELLED, any other reason FAILED), each outcome is its own
arrow, with the reason in brackets.
"""

from __future__ import annotations

from dataclasses import dataclass

from saga.definition import SagaDefinition, decide
from saga.steps import ORDER_SAGA

LABEL_SEPARATOR = "<br/>"


def _reasons(definition: SagaDefinition) -> tuple[tuple[str, str], ...]:
    # Why a compensating saga may be compensating, as the arrows name it: the saga's reason decides where it ends.
    return ((definition.cancelled_reason, definition.cancelled_reason), ("failure", "not cancelled"))


@dataclass(frozen=True)
class Arrow:
    from_state: str
    to_state: str
    messages: tuple[str, ...]
    emits: tuple[str, ...]
    condition: str = ""  # the saga's failure reason this arrow needs, when the outcome depends on it

    @property
    def label(self) -> str:
        text = ", ".join(self.messages)
        if self.condition:
            text += f" [{self.condition}]"
        return f"{text} / {', '.join(self.emits)}" if self.emits else text


def arrows(definition: SagaDefinition = ORDER_SAGA) -> list[Arrow]:
    """The arrows of the diagram: grouped by (from, to, emitted, condition), in the order of the states."""
    grouped: dict[tuple[str, str, tuple[str, ...], str], list[str]] = {}
    for state, message in definition.table:
        for to_state, emits, condition in _outcomes(definition, state, message):
            if to_state == state and not emits:
                continue
            grouped.setdefault((state, to_state, emits, condition), []).append(message)
    order = list(definition.states)
    found = [Arrow(f, t, tuple(sorted(m)), e, c) for (f, t, e, c), m in grouped.items()]
    return sorted(found, key=lambda a: (order.index(a.from_state), order.index(a.to_state), a.label))


def _outcomes(definition: SagaDefinition, state: str, message: str) -> list[tuple[str, tuple[str, ...], str]]:
    """Where `message` takes the saga from `state`, and what it emits; one per reason when they differ."""
    outcomes = [
        (decide(definition, state, message, failure_reason=reason, message_reason=reason), name)
        for reason, name in _reasons(definition)
    ]
    if len({(d.to_state, d.emits) for d, _ in outcomes}) == 1:
        decision = outcomes[0][0]
        return [(decision.to_state, decision.emits, "")]
    return [(d.to_state, d.emits, name) for d, name in outcomes]


def initial_states(definition: SagaDefinition = ORDER_SAGA) -> list[str]:
    """The states no arrow enters from another state: where a saga starts."""
    entered = {a.to_state for a in arrows(definition) if a.to_state != a.from_state}
    return [state for state in definition.states if state not in entered and state not in definition.final_states]


def mermaid(definition: SagaDefinition = ORDER_SAGA) -> str:
    """The diagram of `definition` (the order saga's by default) as Mermaid source (`stateDiagram-v2`), ending
    with a newline.

    One line for each pair of states, its arrows' labels joined by `<br/>`: Mermaid draws two arrows between
    the same states (two loops, above all) on top of each other.
    """
    labels: dict[tuple[str, str], list[str]] = {}
    for arrow in arrows(definition):
        labels.setdefault((arrow.from_state, arrow.to_state), []).append(arrow.label)
    lines = ["stateDiagram-v2"]
    lines += [f"    [*] --> {state}" for state in initial_states(definition)]
    lines += [f"    {f} --> {t}: {LABEL_SEPARATOR.join(texts)}" for (f, t), texts in labels.items()]
    lines += [f"    {state} --> [*]" for state in definition.states if state in definition.final_states]
    return "\n".join(lines) + "\n"
