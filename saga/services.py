"""Applying the saga table: one message, one transaction, under a lock on the saga row."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from config import sql
from config.errors import ConflictError, NotFoundError
from config.services import audit_record
from messaging import correlation
from messaging.outbox import publish
from saga import transitions as t
from saga.models import (
    Saga, SagaTransition, compensation_flagged, compensation_wait_s, state_deadline_s, tracks_compensation,
)

logger = logging.getLogger(__name__)


class SagaNotFoundError(NotFoundError):
    code = "order_not_found"


class OrderNotCancellableError(ConflictError):
    code = "order_not_cancellable"

    def __init__(self, state: str):
        super().__init__(f"the order is already {state.lower()} and can no longer be cancelled", {"state": state})


def saga_start(*, order_id: str, customer_id: str, amount: Decimal, currency: str,
               items: list[dict[str, Any]], cause_message_id: str = "") -> tuple[Saga, SagaTransition]:
    """Create the saga in PAYMENT_PENDING and emit `payment.process`. Must run in the order's transaction.

    Returns the saga and the first step of its timeline."""
    saga = sql.insert(Saga(
        order_id=order_id, state=t.State.PAYMENT_PENDING, state_entered_at=timezone.now(),
        customer_id=customer_id, amount=amount, currency=currency, items=items,
    ))
    _emit(saga, t.PAYMENT_PROCESS)
    first_step = sql.insert(SagaTransition(
        saga=saga, from_state="", to_state=saga.state, message_type="order.created", message_id=cause_message_id,
        emitted=[t.PAYMENT_PROCESS]))
    return saga, first_step


# The texts of the failures the saga itself decides; a participant's failure comes with its own text.
OWN_FAILURE_DETAIL = {
    "timeout": "a step did not answer before its deadline; any payment was refunded",
    t.CANCELLED_REASON: "the order was cancelled; any payment was refunded",
}


def saga_apply(*, order_id: str, message_type: str, message_id: str = "",
               message_reason: str | None = None, message_detail: str | None = None) -> t.Decision:
    """Apply one message to the saga of `order_id`: lock, decide, save, log, emit. Must run in a transaction.

    `message_reason` is the failure code a message carries, `message_detail` its readable text. Safe to
    repeat: the table makes a repeated reply a no-op. Raises SagaNotFoundError for an unknown order.
    """
    found = sql.select_one(Saga, _APPLIED_FIELDS, "order_id = %s", [sql.adapt(Saga, "order_id", order_id)], lock=True)
    if found is None:
        raise SagaNotFoundError(f"no saga for order {order_id}")
    saga = sql.loaded(Saga, order_id=order_id, **found)
    # Log lines carry the saga's state: the one found until the decision, then the one it moves to.
    correlation.saga_state.set(saga.state)
    decision = t.decide(saga.state, message_type, failure_reason=saga.failure_reason or None,
                        message_reason=message_reason)
    correlation.saga_state.set(decision.to_state.value)
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
    if _track_compensation(saga, decision, now) or decision.changed:
        sql.update(saga, _SAVED_FIELDS if decision.changed else _TRACKING_FIELDS)
    if not decision.changed:
        _log_repeat(saga, message_type, decision)
    for routing_key in decision.emits:
        _emit(saga, routing_key)
    sql.insert(SagaTransition(saga_id=order_id, from_state=decision.from_state, to_state=decision.to_state,
                              message_type=message_type, message_id=message_id, emitted=list(decision.emits)))
    if decision.changed and decision.to_state in t.FINAL_STATES:
        from orders.services import order_finish

        order_finish(order_id=order_id, status=decision.to_state.value, failure_reason=saga.failure_reason,
                     failure_detail=saga.failure_detail)
    return decision


# What applying a message reads of the saga, and what it writes.
_APPLIED_FIELDS = ("state", "failure_reason", "failure_detail", "customer_id", "amount", "currency", "items",
                   "compensation_attempts")
_TRACKING_FIELDS = ("compensation_attempts", "compensation_due_at")
_SAVED_FIELDS = ("state", "failure_reason", "failure_detail", "state_entered_at", *_TRACKING_FIELDS)


def _track_compensation(saga: Saga, decision: t.Decision, now: datetime) -> bool:
    """Count what the saga sends past its pending states, and set when the sweep next looks whether it took
    effect. A change of state starts the count again. Returns whether anything was counted."""
    if not decision.emits or not tracks_compensation(decision.to_state):
        return False
    saga.compensation_attempts = (0 if decision.changed else saga.compensation_attempts) + 1
    saga.compensation_due_at = now + timedelta(seconds=compensation_wait_s(saga.compensation_attempts))
    return True


def _log_repeat(saga: Saga, message_type: str, decision: t.Decision) -> None:
    sent, attempt = ", ".join(decision.emits), saga.compensation_attempts
    if message_type not in SWEEP_INPUTS:
        logger.warning("late %s in %s: compensating with %s", message_type, saga.state, sent)
    elif compensation_flagged(attempt):
        logger.error("%s sent again in %s, attempt %s: still no effect after the %s attempts allowed; flagged "
                     "for an operator, retried every %gs", sent, saga.state, attempt,
                     settings.SAGA_COMPENSATION_MAX_ATTEMPTS, compensation_wait_s(attempt))
    else:
        logger.warning("%s sent again in %s, attempt %s: the last one had no effect by its deadline", sent,
                       saga.state, attempt)


def _emit(saga: Saga, routing_key: str) -> None:
    order_id = str(saga.order_id)
    reason = saga.failure_reason or "late_reply"
    payloads = {
        t.PAYMENT_PROCESS: lambda: {"order_id": order_id, "customer_id": saga.customer_id,
                                    "amount": f"{saga.amount:.2f}", "currency": saga.currency},
        t.PAYMENT_REFUND: lambda: {"order_id": order_id, "reason": reason},
        t.INVENTORY_RESERVE: lambda: {"order_id": order_id,
                                      "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in saga.items]},
        t.INVENTORY_RELEASE: lambda: {"order_id": order_id, "reason": reason},
        t.ORDER_COMPLETED: lambda: {"order_id": order_id},
        t.ORDER_FAILED: lambda: {"order_id": order_id, "reason": reason},
    }
    publish(routing_key, payloads[routing_key](), order_id=order_id)


def saga_cancel(*, order_id: str, by: str = "system") -> t.Decision:
    """Cancel a pending order: compensate as a timeout does; the order ends CANCELLED.

    Raises OrderNotCancellableError when the order is already final. Emits `payment.refund`. `by` (who asked)
    goes to the audit log in the same transaction.
    """
    with transaction.atomic(durable=True):
        state = Saga.objects.select_for_update().filter(order_id=order_id).values_list("state", flat=True).first()
        if state is None:
            raise SagaNotFoundError(f"no saga for order {order_id}")
        if state in t.FINAL_STATES:
            raise OrderNotCancellableError(state)
        audit_record(actor=by, action="order.cancel", target=f"order:{order_id}", details={"saga_state": state})
        return saga_apply(order_id=order_id, message_type=t.CANCEL, message_reason=t.CANCELLED_REASON)


# What the sweep raises: TIMEOUT for a saga that has not ended, STOCK_HELD for one that has.
SWEEP_INPUTS = (t.TIMEOUT, t.STOCK_HELD)


def overdue_sagas(*, now: datetime | None = None, order_id: str | None = None) -> QuerySet[Saga]:
    """Sagas that have not moved by the deadline their state allows at `now`: pending past the deadline the
    settings give their state, COMPENSATING past the time to send the refund again, and ended ones whose
    stock is still reserved past the time to ask its release (or commit) again. `order_id`: that saga only."""
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


def _overdue(now: datetime, order_id: str | None = None) -> tuple[QuerySet[Saga], QuerySet[Saga]]:
    late = Q(state=t.State.COMPENSATING, due__lt=now)
    for state in t.PENDING_STATES:
        late |= Q(state=state.value, state_entered_at__lt=now - timedelta(seconds=state_deadline_s(state)))
    live = _with_due().filter(late)
    if order_id is not None:
        live = live.filter(order_id=order_id)
    return live, ended_holding_stock(order_id).filter(due__lt=now)


def _flagged() -> tuple[QuerySet[Saga], QuerySet[Saga]]:
    most = settings.SAGA_COMPENSATION_MAX_ATTEMPTS
    return (Saga.objects.filter(state=t.State.COMPENSATING, compensation_attempts__gte=most),
            ended_holding_stock().filter(compensation_attempts__gte=most))


def _union(*parts: QuerySet[Saga]) -> QuerySet[Saga]:
    # Each part is found through an index: the states of the sagas still going, and the ids of those that
    # ended with stock still reserved. One condition OR-ing them would read the whole table instead.
    first, *others = (part.values("pk") for part in parts)
    return Saga.objects.filter(pk__in=first.union(*others))


def _with_due() -> QuerySet[Saga]:
    # A saga written before the column existed has no due time: it is due from when it entered its state.
    return Saga.objects.alias(due=Coalesce("compensation_due_at", "state_entered_at"))


def ended_holding_stock(order_id: str | None = None) -> QuerySet[Saga]:
    """Ended sagas whose order still has stock reserved: the release (or commit) their end asked for has not
    taken effect yet."""
    from inventory.models import Reservation

    held = Reservation.objects.filter(status=Reservation.Status.ACTIVE)
    if order_id is not None:
        held = held.filter(order_id=order_id)
    return _with_due().filter(state__in=t.FINAL_STATES, order_id__in=held.values("order_id"))


def saga_sweep_timeouts(*, limit: int = 500) -> int:
    """Drive on every saga past its deadline: a pending one times out and compensates, a COMPENSATING one sends
    its refund again, an ended one holding stock asks its release (or commit) again. Returns how many.

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
            if state is None:
                continue
            with correlation.bound(order_id=str(order_id), saga_state=None):
                saga_apply(order_id=str(order_id), message_type=_sweep_input(state), message_reason="timeout")
            driven += 1
    if driven:
        logger.warning("the sweep drove on %s sagas past their deadline", driven)
    return driven


def _sweep_input(state: str) -> str:
    return t.STOCK_HELD if state in t.FINAL_STATES else t.TIMEOUT


class NothingToRetryError(ConflictError):
    code = "nothing_to_retry"

    def __init__(self, state: str):
        super().__init__(f"the saga is {state} and waits on no compensation", {"state": state})


def saga_retry_compensation(*, order_id: str, by: str) -> t.Decision:
    """Send a saga's compensation again now, as the sweep does at its deadline: the refund of a COMPENSATING
    saga, or the release (or commit) of an ended saga whose stock is still reserved. Counts an attempt.

    Raises NothingToRetryError for any other saga. `by` (who asked) goes to the audit log in the same
    transaction.
    """
    with transaction.atomic(durable=True):
        found = Saga.objects.select_for_update().filter(order_id=order_id).values_list(
            "state", "compensation_attempts").first()
        if found is None:
            raise SagaNotFoundError(f"no saga for order {order_id}")
        state, attempts = found
        if state in t.PENDING_STATES or (state in t.FINAL_STATES and not ended_holding_stock(order_id).exists()):
            raise NothingToRetryError(state)
        audit_record(actor=by, action="saga.retry_compensation", target=f"order:{order_id}",
                     details={"saga_state": state, "attempts_before": attempts})
        with correlation.bound(order_id=str(order_id), saga_state=None):
            return saga_apply(order_id=order_id, message_type=_sweep_input(state), message_reason="timeout")


def saga_handle_reply(*, order_id: str, message_type: str, message_id: str,
                      payload: dict[str, Any]) -> t.Decision:
    """Apply a participant's reply. The failure code of a failed step becomes the order's failure reason, and
    its text the order's failure detail."""
    return saga_apply(order_id=order_id, message_type=message_type, message_id=message_id,
                      message_reason=payload.get("code"), message_detail=payload.get("reason"))
