"""Applying the saga table: one message, one transaction, under a lock on the saga row."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.access.services import audit_record
from config.kernel import sql
from config.kernel.errors import ConflictError, NotFoundError
from messaging import correlation, tracing
from messaging.outbox import order_trace_context, publish
from saga import queries, registry
from saga.definition import Decision, ReleasedOnFailure, SagaDefinition, decide
from saga.models import (
    Saga,
    SagaTransition,
    compensation_flagged,
    compensation_wait_s,
    state_deadline_s,
    tracks_compensation,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

logger = logging.getLogger(__name__)


class SagaNotFoundError(NotFoundError):
    code = "order_not_found"


class OrderNotCancellableError(ConflictError):
    code = "order_not_cancellable"

    def __init__(self, state: str):
        super().__init__(f"the order is already {state.lower()} and can no longer be cancelled", {"state": state})


def saga_start(
    *,
    order_id: str,
    customer_id: str,
    amount: Decimal,
    currency: str,
    items: list[dict[str, Any]],
    cause_message_id: str = "",
) -> tuple[Saga, SagaTransition]:
    """Create the saga in its first step's pending state and emit that step's command (the order saga:
    PAYMENT_PENDING, `payment.process`). Must run in the order's transaction.

    Returns the saga and the first step of its timeline."""
    definition = registry.definition()
    saga = sql.insert(
        Saga(
            order_id=order_id,
            state=definition.start_state,
            state_entered_at=timezone.now(),
            customer_id=customer_id,
            amount=amount,
            currency=currency,
            items=items,
        )
    )
    _emit(saga, definition.first_command)
    first_step = sql.insert(
        SagaTransition(
            saga=saga,
            from_state="",
            to_state=saga.state,
            message_type="order.created",
            message_id=cause_message_id,
            emitted=[definition.first_command],
        )
    )
    return saga, first_step


# The reason the sweep gives the inputs it raises.
TIMEOUT_REASON = "timeout"

# The texts of the failures the saga itself decides; a participant's failure comes with its own text.
OWN_FAILURE_DETAIL = {
    TIMEOUT_REASON: "a step did not answer before its deadline; any payment was refunded",
    "cancelled": "the order was cancelled; any payment was refunded",
}


def saga_apply(
    *,
    order_id: str,
    message_type: str,
    message_id: str = "",
    message_reason: str | None = None,
    message_detail: str | None = None,
) -> Decision:
    """Apply one message to the saga of `order_id`: lock, decide, save, log, emit. Must run in a transaction.

    `message_reason` is the failure code a message carries, `message_detail` its readable text. Safe to
    repeat: the table makes a repeated reply a no-op. Raises SagaNotFoundError for an unknown order.
    """
    saga = queries.saga_locked(order_id)
    if saga is None:
        raise SagaNotFoundError(f"no saga for order {order_id}")
    # Log lines carry the saga's state: the one found until the decision, then the one it moves to.
    correlation.saga_state.set(saga.state)
    definition = registry.definition()
    decision = decide(
        definition, saga.state, message_type, failure_reason=saga.failure_reason or None, message_reason=message_reason
    )
    correlation.saga_state.set(decision.to_state)
    if not decision.changed and not decision.emits:
        logger.info("%s ignored by saga in %s: already applied or superseded", message_type, saga.state)
        return decision
    now = timezone.now()
    if decision.changed:
        if (decision.failure_reason or "") != saga.failure_reason:  # this message is why the saga fails
            reason = decision.failure_reason or ""
            saga.failure_detail = (message_detail or OWN_FAILURE_DETAIL.get(reason, reason))[:255]
        saga.state = decision.to_state
        saga.failure_reason = decision.failure_reason or ""
        saga.state_entered_at = now
    releases = _marks_release(definition, saga, decision, now)
    if _track_compensation(definition, saga, decision, now) or decision.changed or releases:
        # Locked above, so it is there: the update goes out with the messages and the timeline line.
        sql.update(saga, _SAVED_FIELDS if decision.changed else _TRACKING_FIELDS, with_batch=True)
    if not decision.changed:
        _log_repeat(definition, saga, message_type, decision)
    for routing_key in decision.emits:
        _emit(saga, routing_key)
    sql.insert(
        SagaTransition(
            saga_id=order_id,
            from_state=decision.from_state,
            to_state=decision.to_state,
            message_type=message_type,
            message_id=message_id,
            emitted=list(decision.emits),
        )
    )
    if decision.changed and decision.to_state in definition.final_states:
        for listener in registry.ended_listeners():
            listener(
                order_id=order_id,
                status=decision.to_state,
                failure_reason=saga.failure_reason,
                failure_detail=saga.failure_detail,
            )
    return decision


# What applying a message writes of the saga (what it reads: saga.queries.APPLIED_FIELDS).
_TRACKING_FIELDS = ("compensation_attempts", "compensation_due_at", "release_sent_at")
_SAVED_FIELDS = ("state", "failure_reason", "failure_detail", "state_entered_at", *_TRACKING_FIELDS)


def _marks_release(definition: SagaDefinition, saga: Saga, decision: Decision, now: datetime) -> bool:
    """Stamp the first release the saga sends that no reply answers; True when it was stamped now."""
    if saga.release_sent_at is not None or not set(decision.emits) & definition.releases_sent_by_saga:
        return False
    saga.release_sent_at = now
    return True


def _track_compensation(definition: SagaDefinition, saga: Saga, decision: Decision, now: datetime) -> bool:
    """Count what the saga sends past its pending states, and set when the sweep next looks whether it took
    effect. A change of state starts the count again. Returns whether anything was counted."""
    if not decision.emits or not tracks_compensation(decision.to_state):
        return False
    if decision.to_state not in definition.final_states and set(decision.emits) <= definition.releases_sent_by_saga:
        return False  # a release on the way, answered by nobody: not a send of the compensation awaited
    if decision.to_state in definition.final_states and (
        decision.to_state not in definition.watched_final_states or _asks_nothing(definition, saga, decision)
    ):
        # Nothing to wait for (the order saga's COMPLETED, or a FAILED that took no stock), and what was counted
        # before the end (a refund, answered) is done with.
        if decision.changed:
            saga.compensation_attempts, saga.compensation_due_at = 0, None
        return False
    saga.compensation_attempts = (0 if decision.changed else saga.compensation_attempts) + 1
    saga.compensation_due_at = now + timedelta(
        seconds=compensation_wait_s(saga.compensation_attempts, state=decision.to_state)
    )
    return True


def _asks_nothing(definition: SagaDefinition, saga: Saga, decision: Decision) -> bool:
    """Whether an end sends only the saga's own events, with no release of the saga's own on its way, and no
    participant releasing anything on the failure event: the sweep has nothing to check of it."""
    ends = {definition.completed_event, definition.failed_event}
    return set(decision.emits) <= ends and saga.release_sent_at is None and not definition.released_by_its_end


def _log_repeat(definition: SagaDefinition, saga: Saga, message_type: str, decision: Decision) -> None:
    sent, attempt = ", ".join(decision.emits), saga.compensation_attempts
    if message_type != definition.timeout and message_type not in definition.held_inputs:
        logger.warning("late %s in %s: compensating with %s", message_type, saga.state, sent)
    elif compensation_flagged(attempt):
        logger.error(
            "%s sent again in %s, attempt %s: still no effect after the %s attempts allowed; flagged "
            "for an operator, retried every %gs",
            sent,
            saga.state,
            attempt,
            settings.SAGA_COMPENSATION_MAX_ATTEMPTS,
            compensation_wait_s(attempt, state=saga.state),
        )
    else:
        logger.warning(
            "%s sent again in %s, attempt %s: the last one had no effect by its deadline", sent, saga.state, attempt
        )


def _emit(saga: Saga, routing_key: str) -> None:
    publish(routing_key, registry.payload(saga, routing_key), order_id=str(saga.order_id))


def saga_cancel(*, order_id: str, by: str = "system") -> Decision:
    """Cancel a pending order: compensate as a timeout does; the order ends CANCELLED.

    Raises OrderNotCancellableError when the order is already final. Emits `payment.refund`. `by` (who asked)
    goes to the audit log in the same transaction.
    """
    definition = registry.definition()
    with transaction.atomic(durable=True):
        state = Saga.objects.select_for_update().filter(order_id=order_id).values_list("state", flat=True).first()
        if state is None:
            raise SagaNotFoundError(f"no saga for order {order_id}")
        if state in definition.final_states:
            raise OrderNotCancellableError(state)
        audit_record(actor=by, action="order.cancel", target=f"order:{order_id}", details={"saga_state": state})
        return saga_apply(order_id=order_id, message_type=definition.cancel, message_reason=definition.cancelled_reason)


def overdue_sagas(*, now: datetime | None = None, order_id: str | None = None) -> QuerySet[Saga]:
    """Sagas that have not moved by the deadline their state allows at `now`: pending past the deadline the
    settings give their state, compensating past the time to send their compensation again, and ended ones
    whose participant still holds a step's work (the order saga: stock still reserved) past the time to ask
    its release (or commit) again. `order_id`: that saga only."""
    return _union(*_overdue(now or timezone.now(), order_id))


def flagged_sagas() -> QuerySet[Saga]:
    """Sagas that have sent their compensation as many times as SAGA_COMPENSATION_MAX_ATTEMPTS allows and still
    wait for it to take effect: the sweep goes on at the cap, and an operator should look."""
    return _union(*_flagged())


def stuck_sagas(*, now: datetime | None = None, grace: timedelta = timedelta(0)) -> QuerySet[Saga]:
    """What /health, saga_audit and /metrics count: sagas past their deadline by more than `grace`, and the
    flagged ones."""
    return _union(*_overdue((now or timezone.now()) - grace), *_flagged())


def sweep_grace() -> timedelta:
    """How long past its deadline a saga may wait for the sweep to act: one SAGA_SWEEP_INTERVAL_S."""
    return timedelta(seconds=settings.SAGA_SWEEP_INTERVAL_S)


def _overdue(now: datetime, order_id: str | None = None) -> list[QuerySet[Saga]]:
    definition = registry.definition()
    late = [Q(state=state, due__lt=now) for state in definition.resending_states]
    late += [
        Q(state=state, state_entered_at__lt=now - timedelta(seconds=state_deadline_s(state) or 0))
        for state in definition.pending_states
    ]
    live = _with_due().filter(reduce(or_, late))
    if order_id is not None:
        live = live.filter(order_id=order_id)
    return [live, *(ended.filter(due__lt=now) for ended in _ended_holding(definition, order_id).values())]


def _flagged() -> list[QuerySet[Saga]]:
    definition = registry.definition()
    most = settings.SAGA_COMPENSATION_MAX_ATTEMPTS
    return [
        Saga.objects.filter(state__in=definition.compensating_states, compensation_attempts__gte=most),
        *(ended.filter(compensation_attempts__gte=most) for ended in _ended_holding(definition).values()),
    ]


def _union(*parts: QuerySet[Saga]) -> QuerySet[Saga]:
    # Each part is found through an index: the states of the sagas still going, and the ids of those that
    # ended with a step's work still held. One condition OR-ing them would read the whole table instead.
    first, *others = (part.values("pk") for part in parts)
    return Saga.objects.filter(pk__in=first.union(*others))


class _Due(TypedDict):
    due: datetime


def _with_due() -> QuerySet[WithAnnotations[Saga, _Due]]:
    # A saga written before the column existed has no due time: it is due from when it entered its state.
    return Saga.objects.alias(due=Coalesce("compensation_due_at", "state_entered_at"))


def ended_holding(late_command: str, order_id: str | None = None) -> QuerySet[WithAnnotations[Saga, _Due]]:
    """Ended sagas whose participant still holds what `late_command` undoes (the order saga's
    `inventory.release`: stock still taken by a failed order) where it should not: the release (or commit)
    their end asked for has not taken effect yet. `order_id`: that saga only."""
    definition = registry.definition()
    compensation = next(
        step.compensation
        for step in definition.steps
        if isinstance(step.compensation, ReleasedOnFailure) and step.compensation.late_command == late_command
    )
    return _still_holding(definition, compensation, order_id)


def _still_holding(
    definition: SagaDefinition, compensation: ReleasedOnFailure, order_id: str | None
) -> QuerySet[WithAnnotations[Saga, _Due]]:
    assert compensation.held_input
    held = registry.still_held(compensation.late_command)(order_id)
    ended = _with_due().filter(state__in=definition.holding_states(compensation.held_input))
    if compensation.sent_by_saga:
        ended = ended.filter(release_sent_at__isnull=False)  # no release sent: nothing was taken for it
    return ended.filter(order_id__in=held)


def _ended_holding(
    definition: SagaDefinition, order_id: str | None = None
) -> dict[str, QuerySet[WithAnnotations[Saga, _Due]]]:
    """For each held input of `definition`, the ended sagas the sweep raises it for."""
    return {
        step.compensation.held_input: _still_holding(definition, step.compensation, order_id)
        for step in definition.steps
        if isinstance(step.compensation, ReleasedOnFailure) and step.compensation.held_input
    }


def saga_sweep_timeouts(*, limit: int = 500) -> int:
    """Drive on every saga past its deadline: a pending one times out and compensates, a compensating one sends
    its compensation again, an ended one still holding a step's work asks its release (or commit) again.
    Returns how many.

    Safe to run from several schedulers at once: each saga is claimed with SKIP LOCKED and re-checked.
    """
    candidates = list(overdue_sagas().order_by("state_entered_at").values_list("order_id", flat=True)[:limit])
    driven = 0
    for order_id in candidates:
        with transaction.atomic():
            if not Saga.objects.select_for_update(skip_locked=True).filter(order_id=order_id).exists():
                continue  # another sweep has it
            # Checked again under the lock, in a statement of its own: it sees what another sweep committed.
            state = overdue_sagas(order_id=str(order_id)).values_list("state", flat=True).first()
            message_type = None if state is None else _sweep_input(str(order_id), state)
            if message_type is None:
                continue
            # In the order's trace, where tracing is on: the sweep's span only exists when it acts.
            parent = order_trace_context(str(order_id)) if tracing.enabled else None
            attributes = {
                "sagaflow.order_id": str(order_id),
                "sagaflow.saga.state": state,
                "sagaflow.input": message_type,
            }
            with (
                correlation.bound(order_id=str(order_id), saga_state=None),
                tracing.span("saga timeout sweep", parent=parent, attributes=attributes),
            ):
                saga_apply(order_id=str(order_id), message_type=message_type, message_reason=TIMEOUT_REASON)
            driven += 1
    if driven:
        logger.warning("the sweep drove on %s sagas past their deadline", driven)
    return driven


def _sweep_input(order_id: str, state: str) -> str | None:
    """What the sweep raises for a saga in `state`: the timeout in a pending state, or in a compensating one
    that sends its compensation again; after the end, the held input of the first step whose work the saga
    still holds. None: nothing the sweep could send would change anything."""
    definition = registry.definition()
    if state in definition.final_states:
        return next((held for held, ended in _ended_holding(definition, order_id).items() if ended.exists()), None)
    waits = state in definition.pending_states or state in definition.resending_states
    return definition.timeout if waits else None


class NothingToRetryError(ConflictError):
    code = "nothing_to_retry"

    def __init__(self, state: str):
        super().__init__(f"the saga is {state} and waits on no compensation", {"state": state})


def saga_retry_compensation(*, order_id: str, by: str) -> Decision:
    """Send a saga's compensation again now, as the sweep does at its deadline: the refund of a COMPENSATING
    saga, or the release (or commit) of an ended saga whose stock is still reserved. Counts an attempt.

    Raises NothingToRetryError for any other saga. `by` (who asked) goes to the audit log in the same
    transaction.
    """
    definition = registry.definition()
    with transaction.atomic(durable=True):
        found = (
            Saga.objects.select_for_update()
            .filter(order_id=order_id)
            .values_list("state", "compensation_attempts")
            .first()
        )
        if found is None:
            raise SagaNotFoundError(f"no saga for order {order_id}")
        state, attempts = found
        message_type = None if state in definition.pending_states else _sweep_input(order_id, state)
        if message_type is None:
            raise NothingToRetryError(state)
        audit_record(
            actor=by,
            action="saga.retry_compensation",
            target=f"order:{order_id}",
            details={"saga_state": state, "attempts_before": attempts},
        )
        with correlation.bound(order_id=str(order_id), saga_state=None):
            return saga_apply(order_id=order_id, message_type=message_type, message_reason=TIMEOUT_REASON)


def saga_handle_reply(*, order_id: str, message_type: str, message_id: str, payload: dict[str, Any]) -> Decision:
    """Apply a participant's reply. The failure code of a failed step becomes the order's failure reason, and
    its text the order's failure detail."""
    return saga_apply(
        order_id=order_id,
        message_type=message_type,
        message_id=message_id,
        message_reason=payload.get("code"),
        message_detail=payload.get("reason"),
    )
