"""Applying the saga table: one message, one transaction, under a lock on the saga row."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config import sql
from config.errors import ConflictError, NotFoundError
from config.services import audit_record
from messaging import correlation
from messaging.outbox import publish
from saga import transitions as t
from saga.models import Saga, SagaTransition, state_deadline_s

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
    if decision.changed:
        if (decision.failure_reason or "") != saga.failure_reason:  # this message is why the saga fails
            reason = decision.failure_reason or ""
            saga.failure_detail = (message_detail or OWN_FAILURE_DETAIL.get(reason, reason))[:255]
        saga.state = decision.to_state
        saga.failure_reason = decision.failure_reason or ""
        saga.state_entered_at = timezone.now()
        sql.update(saga, ["state", "failure_reason", "failure_detail", "state_entered_at"])
    else:
        logger.warning("late %s in %s: compensating with %s", message_type, saga.state, ", ".join(decision.emits))
    for routing_key in decision.emits:
        _emit(saga, routing_key)
    sql.insert(SagaTransition(saga_id=order_id, from_state=decision.from_state, to_state=decision.to_state,
                              message_type=message_type, message_id=message_id, emitted=list(decision.emits)))
    if decision.changed and decision.to_state in t.FINAL_STATES:
        from orders.services import order_finish

        order_finish(order_id=order_id, status=decision.to_state.value, failure_reason=saga.failure_reason,
                     failure_detail=saga.failure_detail)
    return decision


# What applying a message reads of the saga.
_APPLIED_FIELDS = ("state", "failure_reason", "failure_detail", "customer_id", "amount", "currency", "items")


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


def overdue_sagas(*, now=None):
    """Sagas that stayed in a pending state past the deadline the settings give that state now."""
    now = now or timezone.now()
    overdue = Q()
    for state in t.PENDING_STATES:
        cutoff = now - timedelta(seconds=state_deadline_s(state))
        overdue |= Q(state=state.value, state_entered_at__lt=cutoff)
    return Saga.objects.filter(overdue)


def saga_sweep_timeouts(*, limit: int = 500) -> int:
    """Compensate the sagas that stayed pending past their deadline. Returns how many were timed out.

    Safe to run from several schedulers at once: each saga is claimed with SKIP LOCKED and re-checked.
    """
    candidates = list(overdue_sagas().order_by("state_entered_at").values_list("order_id", flat=True)[:limit])
    timed_out = 0
    for order_id in candidates:
        with transaction.atomic():
            claimed = overdue_sagas().select_for_update(skip_locked=True).filter(order_id=order_id).exists()
            if not claimed:
                continue
            with correlation.bound(order_id=str(order_id), saga_state=None):
                saga_apply(order_id=str(order_id), message_type=t.TIMEOUT, message_reason="timeout")
            timed_out += 1
    if timed_out:
        logger.warning("timed out %s sagas", timed_out)
    return timed_out


def saga_handle_reply(*, order_id: str, message_type: str, message_id: str,
                      payload: dict[str, Any]) -> t.Decision:
    """Apply a participant's reply. The failure code of a failed step becomes the order's failure reason, and
    its text the order's failure detail."""
    return saga_apply(order_id=order_id, message_type=message_type, message_id=message_id,
                      message_reason=payload.get("code"), message_detail=payload.get("reason"))
