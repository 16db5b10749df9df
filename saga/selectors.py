"""Reads of the saga: its state and timeline."""

from __future__ import annotations

from django.db.models import QuerySet

from saga.models import SagaTransition


def saga_history(*, order_id: str) -> QuerySet[SagaTransition]:
    return SagaTransition.objects.filter(saga_id=order_id).order_by("at", "id")


def saga_state_and_history(*, order_id: str) -> tuple[str, list[SagaTransition]] | None:
    """The saga's state and timeline in one query: every change of state is logged in the same transaction
    as the change, so the last step's `to_state` is the state. None when the order has no saga."""
    history = list(saga_history(order_id=order_id))
    return (history[-1].to_state, history) if history else None
