"""A saga written as an ordered list of steps, and the complete transition table generated from it. Pure.

Each step sends a command and waits in its pending state for the command's success or failure reply. The
steps run in order; after the last success the saga emits its completion event. A failure reply, a timeout
or a cancel while a step is pending compensates what may have acted, in reverse order: a step undone by a
command waits in a compensating state of its own for that command's reply before the step before it is
undone; a step released by a command that needs no reply is released when the compensation reaches it; a
step that its participant undoes on the saga's failure event is undone when that event goes out, at the end.
So a saga needs one compensating state per command-compensated step, and no more: in a compensating state
every step before it has succeeded, so what remains to undo is known from the state.

`build_table()` gives every state × every input an entry, so a late or repeated reply is never dropped:
a repeat is a no-op, and a late success that moved money or stock in a saga that is failing or has failed
is undone by its step's compensation command. A compensation may be sent again on its state's deadline
(`resend_on_timeout`), and an ended saga whose participant still holds a step's work asked again for it
(`held_input`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

# The name of a setting that gives seconds, or seconds. Resolved outside this module, where settings live.
Deadline = str | float

# Where a compensating state leads once its compensation is done: to the cancelled state when the saga's
# reason is the cancel's, else to the failed one (`resolve`).
FINISH_COMPENSATION = "FINISH_COMPENSATION"


@dataclass(frozen=True)
class Transition:
    """One cell of the table: where the saga goes, what it sends, and whether the message's failure reason
    becomes the saga's."""

    to_state: str | None  # None: stay in the current state
    emits: tuple[str, ...] = ()
    records_failure: bool = False
    note: str = ""

    @property
    def changes_state(self) -> bool:
        return self.to_state is not None


STAY = Transition(None, note="already applied or superseded: no effect")


@dataclass(frozen=True)
class Decision:
    """What applying one message does: the states before and after, what to send, the saga's failure reason."""

    from_state: str
    to_state: str
    emits: tuple[str, ...]
    failure_reason: str | None

    @property
    def changed(self) -> bool:
        return self.from_state != self.to_state


class DefinitionError(ValueError):
    """A saga definition that cannot give a complete, unambiguous table."""


@dataclass(frozen=True)
class CompensateByCommand:
    """The step is undone by `command`, whose participant answers `reply`.

    The command must be idempotent: it is sent again for a late success reply of the step, and on the
    compensating state's deadline when `resend_on_timeout`. While it waits for the reply the saga is in
    `state`; `deadline` is that state's (None: it has none).
    """

    command: str
    reply: str
    state: str
    resend_on_timeout: bool = False
    deadline: Deadline | None = None


@dataclass(frozen=True)
class ReleasedOnFailure:
    """The step is undone by `late_command`, which needs no reply. By default its participant undoes it
    when it hears the saga's failure event (and settles it on the completion event), and the saga sends
    `late_command` only for a success reply that arrives after the saga has failed.

    `sent_by_saga`: the saga sends `late_command` itself when its compensation reaches the step (a timeout,
    a cancel, or the failure of a later step), so the participant needs neither final event: what the step
    did stands once the saga completes. A failure reply of the step itself needs no release: it did nothing.

    `held_input`: the input the sweep raises for an ended saga whose participant still holds what the step
    took, its end lost on the way. The saga asks again: `late_command` once failed or cancelled; once
    completed, the completion event, unless `sent_by_saga` (the work is then meant to stay). None: the saga
    has no such input.
    """

    late_command: str
    held_input: str | None = None
    sent_by_saga: bool = False


Compensation = CompensateByCommand | ReleasedOnFailure


@dataclass(frozen=True)
class Step:
    """One step: `command` is answered by `success` or one of `failures`; the saga waits in `pending_state`
    at most `deadline`. `compensation` None: the step changes nothing that would need undoing."""

    name: str
    command: str
    success: str
    failures: tuple[str, ...]
    pending_state: str
    deadline: Deadline
    compensation: Compensation | None = None


@dataclass(frozen=True)
class SagaDefinition:
    """The steps in order, and what the saga itself owns: its final events and states, and the inputs that
    are not on the wire (the timeout sweep's and the cancel's). `cancelled_reason` is the reason a cancel
    records: compensating for it ends in `cancelled_state`."""

    steps: tuple[Step, ...]
    completed_event: str
    failed_event: str
    completed_state: str
    failed_state: str
    cancelled_state: str
    timeout: str
    cancel: str
    cancelled_reason: str

    @cached_property
    def start_state(self) -> str:
        return self.steps[0].pending_state

    @cached_property
    def first_command(self) -> str:
        return self.steps[0].command

    @cached_property
    def pending_states(self) -> tuple[str, ...]:
        return tuple(step.pending_state for step in self.steps)

    @cached_property
    def compensating_states(self) -> tuple[str, ...]:
        return tuple(compensation.state for compensation in _commands(self.steps))

    @cached_property
    def final_states(self) -> tuple[str, ...]:
        return self.completed_state, self.failed_state, self.cancelled_state

    @cached_property
    def states(self) -> tuple[str, ...]:
        return self.pending_states + self.compensating_states + self.final_states

    @cached_property
    def compensation_replies(self) -> tuple[str, ...]:
        """The replies to the saga's compensation commands: each ends an undo."""
        return tuple(compensation.reply for compensation in _commands(self.steps))

    @cached_property
    def replies(self) -> tuple[str, ...]:
        """The messages the saga hears on the wire: each step's replies, and its compensation's."""
        replies = []
        for step in self.steps:
            replies += [step.success, *step.failures]
            if isinstance(step.compensation, CompensateByCommand):
                replies.append(step.compensation.reply)
        return tuple(replies)

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        """Every message the saga hears: the replies, then its own: the timeout, the held inputs, the cancel."""
        return (*self.replies, self.timeout, *self.held_inputs, self.cancel)

    @cached_property
    def held_inputs(self) -> tuple[str, ...]:
        return tuple(
            step.compensation.held_input
            for step in self.steps
            if isinstance(step.compensation, ReleasedOnFailure) and step.compensation.held_input
        )

    @cached_property
    def emitted(self) -> tuple[str, ...]:
        """Every message the saga may send: the steps' commands and compensations, and its final events."""
        sent = []
        for step in self.steps:
            sent.append(step.command)
            if isinstance(step.compensation, CompensateByCommand):
                sent.append(step.compensation.command)
            elif isinstance(step.compensation, ReleasedOnFailure):
                sent.append(step.compensation.late_command)
        return (*sent, self.completed_event, self.failed_event)

    @cached_property
    def resending_states(self) -> tuple[str, ...]:
        """The compensating states whose compensation is sent again on their deadline."""
        return tuple(c.state for c in _commands(self.steps) if c.resend_on_timeout)

    @cached_property
    def deadlines(self) -> dict[str, Deadline]:
        """The states the timeout sweep watches, and how long a saga may stay in each."""
        found: dict[str, Deadline] = {step.pending_state: step.deadline for step in self.steps}
        for compensation in _commands(self.steps):
            if compensation.deadline is not None:
                found[compensation.state] = compensation.deadline
        return found

    @cached_property
    def releases_sent_by_saga(self) -> frozenset[str]:
        """The release commands the saga sends itself as its compensation reaches their step."""
        return frozenset(_released_by_saga(self.steps))

    @cached_property
    def watched_final_states(self) -> tuple[str, ...]:
        """The final states the sweep still looks at: those where a step's work may be held when it should not."""
        return tuple(
            state for state in self.final_states if any(state in self.holding_states(h) for h in self.held_inputs)
        )

    @cached_property
    def released_by_its_end(self) -> bool:
        """Whether a step's work is released by the failure event itself, not by a release the saga sends: the
        end then asks something of a participant."""
        return any(
            isinstance(step.compensation, ReleasedOnFailure) and not step.compensation.sent_by_saga
            for step in self.steps
        )

    def holding_states(self, held_input: str) -> tuple[str, ...]:
        """The final states in which `held_input` asks for something: where work still held is wrong."""
        return tuple(state for state in self.final_states if self.table[(state, held_input)].emits)

    @cached_property
    def table(self) -> dict[tuple[str, str], Transition]:
        """`build_table(self)`, built once."""
        return build_table(self)


def build_table(definition: SagaDefinition) -> dict[tuple[str, str], Transition]:
    """The complete table of `definition`: (state, input) -> Transition for every state and every input.

    Raises DefinitionError for a definition whose states or messages are not distinct.
    """
    check(definition)
    table: dict[tuple[str, str], Transition] = {}
    for index, step in enumerate(definition.steps):
        table |= _row(definition, step.pending_state, _pending(definition, index))
    for index, step in enumerate(definition.steps):
        if isinstance(step.compensation, CompensateByCommand):
            table |= _row(definition, step.compensation.state, _compensating(definition, index))
    table |= _row(definition, definition.completed_state, _held(definition, (definition.completed_event,)))
    for ended in (definition.failed_state, definition.cancelled_state):
        table |= _row(definition, ended, _late_successes(definition.steps, released_too=True) | _held(definition))
    return table


def check(definition: SagaDefinition) -> None:
    """Raise DefinitionError unless the definition has steps, distinct states, and distinct messages."""
    if not definition.steps:
        raise DefinitionError("a saga needs at least one step")
    for what, names in (
        ("state", definition.states),
        ("input", definition.inputs),
        ("emitted message", definition.emitted),
    ):
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise DefinitionError(f"{what} named more than once: {', '.join(repeated)}")
    both = sorted(set(definition.inputs) & set(definition.emitted))
    if both:
        raise DefinitionError(f"both heard and sent by the saga: {', '.join(both)}")
    if FINISH_COMPENSATION in definition.states:
        raise DefinitionError(f"{FINISH_COMPENSATION} is reserved")


def decide(
    definition: SagaDefinition,
    state: str,
    message_type: str,
    *,
    failure_reason: str | None = None,
    message_reason: str | None = None,
) -> Decision:
    """What the saga of `definition` does with `message_type` in `state`.

    `failure_reason` is the saga's current one; `message_reason` the one the message carries (a failure
    code, `timeout` or the cancel's). Raises KeyError for a state or a message the definition does not have.
    """
    transition = definition.table[(state, message_type)]
    to_state, reason = resolve(
        definition, state, transition, failure_reason=failure_reason, message_reason=message_reason
    )
    return Decision(state, to_state, transition.emits, reason)


def resolve(
    definition: SagaDefinition,
    state: str,
    transition: Transition,
    *,
    failure_reason: str | None,
    message_reason: str | None,
) -> tuple[str, str | None]:
    """The state `transition` leads to from `state`, and the saga's failure reason after it."""
    reason = message_reason if transition.records_failure else failure_reason
    to_state = state if transition.to_state is None else transition.to_state
    if to_state == FINISH_COMPENSATION:
        to_state = definition.cancelled_state if reason == definition.cancelled_reason else definition.failed_state
    return to_state, reason


def _row(definition: SagaDefinition, state: str, moves: dict[str, Transition]) -> dict[tuple[str, str], Transition]:
    """Every input in `state`: the given moves, and no effect for all the others."""
    return {(state, message): moves.get(message, STAY) for message in definition.inputs}


def _pending(definition: SagaDefinition, index: int) -> dict[str, Transition]:
    step = definition.steps[index]
    moves = {step.success: _advance(definition, index)}
    # A failure reply says the step did nothing: undo the steps before it.
    failed = _start_compensation(
        definition, definition.steps[:index], ends=definition.failed_state, why=f"{step.name} failed"
    )
    moves |= {failure: failed for failure in step.failures}
    # A step that did not answer in time, or is cancelled, may still act: undo it too.
    stopped = _start_compensation(
        definition, definition.steps[: index + 1], ends=FINISH_COMPENSATION, why=f"{step.name} timed out or cancelled"
    )
    return moves | {definition.timeout: stopped, definition.cancel: stopped}


def _advance(definition: SagaDefinition, index: int) -> Transition:
    if index + 1 == len(definition.steps):
        return Transition(definition.completed_state, (definition.completed_event,), note="last step done")
    following = definition.steps[index + 1]
    return Transition(following.pending_state, (following.command,), note=f"{definition.steps[index].name} done")


def _start_compensation(definition: SagaDefinition, acted: tuple[Step, ...], *, ends: str, why: str) -> Transition:
    """Release the steps of `acted` after its last command-compensated one that the saga releases itself,
    and undo that one; with none, end now with the failure event (which releases the steps undone on it)."""
    undo, released = _undo_first(acted)
    if undo is None:
        emits = (*released, definition.failed_event)
        note = f"{why}: release" if released else f"{why}: nothing to undo"
        return Transition(ends, emits, records_failure=True, note=note)
    return Transition(undo.state, (*released, undo.command), records_failure=True, note=f"{why}: compensate")


def _compensating(definition: SagaDefinition, index: int) -> dict[str, Transition]:
    """Waiting for the reply of the compensation of step `index`; every step before it has succeeded."""
    compensation = definition.steps[index].compensation
    assert isinstance(compensation, CompensateByCommand)
    undo, released = _undo_first(definition.steps[:index])
    if undo is None:
        emits = (*released, definition.failed_event)
        done = Transition(FINISH_COMPENSATION, emits, note="compensated: the failure event")
    else:
        done = Transition(undo.state, (*released, undo.command), note="compensated: undo the step before")
    # Late successes of this step and of those undone already are undone again; of the steps still to undo,
    # they are repeats: their turn comes.
    moves = _late_successes(definition.steps[index:], released_too=False) | {compensation.reply: done}
    if compensation.resend_on_timeout:
        moves[definition.timeout] = Transition(None, (compensation.command,), note="no reply yet: send it again")
    return moves


def _late_successes(steps: tuple[Step, ...], *, released_too: bool) -> dict[str, Transition]:
    """A success reply of one of `steps` that may have moved money or stock, undone by its step's command.

    `released_too`: also the steps undone on the failure event, once that event has gone out. The steps
    that the saga releases itself are always undone again: their release has gone out already.
    """
    moves = {}
    for step in steps:
        if isinstance(step.compensation, CompensateByCommand):
            moves[step.success] = Transition(None, (step.compensation.command,), note=f"late {step.success}: undo")
        elif isinstance(step.compensation, ReleasedOnFailure) and (released_too or step.compensation.sent_by_saga):
            moves[step.success] = Transition(None, (step.compensation.late_command,), note=f"late {step.success}: undo")
    return moves


def _held(definition: SagaDefinition, end: tuple[str, ...] | None = None) -> dict[str, Transition]:
    """An ended saga whose participant still holds a step's work: send `end` again, or else the step's late
    command. Before the end, the end still to come settles it."""
    moves = {}
    for step in definition.steps:
        if isinstance(step.compensation, ReleasedOnFailure) and step.compensation.held_input:
            if end and step.compensation.sent_by_saga:
                continue  # completed: what the step did is meant to stay
            again = end or (step.compensation.late_command,)
            moves[step.compensation.held_input] = Transition(None, again, note=f"{step.name} still held: ask again")
    return moves


def _commands(steps: tuple[Step, ...]) -> list[CompensateByCommand]:
    return [step.compensation for step in steps if isinstance(step.compensation, CompensateByCommand)]


def _undo_first(steps: tuple[Step, ...]) -> tuple[CompensateByCommand | None, tuple[str, ...]]:
    """What undoing `steps` from the last one sends first: the releases the saga sends itself for the steps
    after the last command-compensated one, and that one's compensation (None: no step has one)."""
    for index in reversed(range(len(steps))):
        compensation = steps[index].compensation
        if isinstance(compensation, CompensateByCommand):
            return compensation, _released_by_saga(steps[index + 1 :])
    return None, _released_by_saga(steps)


def _released_by_saga(steps: tuple[Step, ...]) -> tuple[str, ...]:
    """The release commands of those of `steps` that the saga releases itself, the last step's first."""
    return tuple(
        step.compensation.late_command
        for step in reversed(steps)
        if isinstance(step.compensation, ReleasedOnFailure) and step.compensation.sent_by_saga
    )
