"""The saga's state diagram, drawn from its transition table as Mermaid `stateDiagram-v2`. Pure, like the table.

Every pair of a state and a message that moves the saga or emits a message is an arrow, labelled
`messages / emitted`. A reply compensated because it came too late is a loop on its state. A pair that does
neither (a duplicate, a reply the saga no longer waits for) is left out. Where the next state depends on why
the saga is compensating (a cancelled order ends CANCELLED, any other reason FAILED), each outcome is its own
arrow, with the reason in brackets.
"""

from __future__ import annotations

from dataclasses import dataclass

from saga.transitions import CANCELLED_REASON, FINAL_STATES, TABLE, State, decide

LABEL_SEPARATOR = "<br/>"

# Why a compensating saga may be compensating, as the arrows name it: the saga's reason decides where it ends.
_REASONS = ((CANCELLED_REASON, CANCELLED_REASON), ("failure", "not cancelled"))


@dataclass(frozen=True)
class Arrow:
    from_state: State
    to_state: State
    messages: tuple[str, ...]
    emits: tuple[str, ...]
    condition: str = ""  # the saga's failure reason this arrow needs, when the outcome depends on it

    @property
    def label(self) -> str:
        text = ", ".join(self.messages)
        if self.condition:
            text += f" [{self.condition}]"
        return f"{text} / {', '.join(self.emits)}" if self.emits else text


def arrows() -> list[Arrow]:
    """The arrows of the diagram: grouped by (from, to, emitted, condition), in the order of `State`."""
    grouped: dict[tuple[State, State, tuple[str, ...], str], list[str]] = {}
    for state, message in TABLE:
        for to_state, emits, condition in _outcomes(state, message):
            if to_state == state and not emits:
                continue
            grouped.setdefault((state, to_state, emits, condition), []).append(message)
    order = list(State)
    found = [Arrow(f, t, tuple(sorted(m)), e, c) for (f, t, e, c), m in grouped.items()]
    return sorted(found, key=lambda a: (order.index(a.from_state), order.index(a.to_state), a.label))


def _outcomes(state: State, message: str) -> list[tuple[State, tuple[str, ...], str]]:
    """Where `message` takes the saga from `state`, and what it emits; one per reason when they differ."""
    outcomes = [
        (decide(state, message, failure_reason=reason, message_reason=reason), name) for reason, name in _REASONS
    ]
    if len({(d.to_state, d.emits) for d, _ in outcomes}) == 1:
        decision = outcomes[0][0]
        return [(State(decision.to_state), decision.emits, "")]
    return [(State(d.to_state), d.emits, name) for d, name in outcomes]


def initial_states() -> list[State]:
    """The states no arrow enters from another state: where a saga starts."""
    entered = {a.to_state for a in arrows() if a.to_state != a.from_state}
    return [state for state in State if state not in entered and state not in FINAL_STATES]


def mermaid() -> str:
    """The diagram as Mermaid source (`stateDiagram-v2`), ending with a newline.

    One line for each pair of states, its arrows' labels joined by `<br/>`: Mermaid draws two arrows between
    the same states (two loops, above all) on top of each other.
    """
    labels: dict[tuple[State, State], list[str]] = {}
    for arrow in arrows():
        labels.setdefault((arrow.from_state, arrow.to_state), []).append(arrow.label)
    lines = ["stateDiagram-v2"]
    lines += [f"    [*] --> {state.value}" for state in initial_states()]
    lines += [f"    {f.value} --> {t.value}: {LABEL_SEPARATOR.join(texts)}" for (f, t), texts in labels.items()]
    lines += [f"    {state.value} --> [*]" for state in State if state in FINAL_STATES]
    return "\n".join(lines) + "\n"
