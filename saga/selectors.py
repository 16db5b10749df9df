"""Reads of the saga: its state and timeline."""

from __future__ import annotations

from django.db.models import QuerySet

from saga.models import Saga, SagaTransition


def saga_get(*, order_id: str) -> Saga | None:
    return Saga.objects.filter(order_id=order_id).first()


def saga_history(*, order_id: str) -> QuerySet[SagaTransition]:
    return SagaTransition.objects.filter(saga_id=order_id).order_by("at", "id")
