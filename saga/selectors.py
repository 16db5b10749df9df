"""Reads of the saga: its state and timeline, and how many sagas there are in each state."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from saga import registry
from saga.models import Saga, SagaTransition


def saga_history(*, order_id: str) -> QuerySet[SagaTransition]:
    return SagaTransition.objects.filter(saga_id=order_id).order_by("at", "id")


def saga_state_and_history(*, order_id: str) -> tuple[str, list[SagaTransition]] | None:
    """The saga's state and timeline in one query: every change of state is logged in the same transaction
    as the change, so the last step's `to_state` is the state. None when the order has no saga."""
    history = list(saga_history(order_id=order_id))
    return (history[-1].to_state, history) if history else None


def _open_states() -> list[str]:
    definition = registry.definition()
    return sorted(set(definition.states) - set(definition.final_states))


# Older than this, a saga's row has long been committed: no transaction that wrote one is still open.
SETTLED_AFTER = timedelta(minutes=1)


class _SagaTally:
    """How many sagas there are by (state, failure reason), without counting every saga ever placed at each call.

    A saga in a final state never changes its state or its reason again. So the final sagas created before a
    watermark are counted once and kept; a call counts only the sagas created since, and those still open,
    through the indexes on `created_at` and `state`. The watermark never passes the oldest open saga. One
    tally per process; a change of the oldest saga (rows deleted, a database emptied) starts it again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled: Tally = Tally()
        self._watermark: datetime | None = None
        self._oldest: datetime | None = None

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            oldest = Saga.objects.aggregate(oldest=Min("created_at"))["oldest"]
            if oldest != self._oldest:
                self._settled, self._watermark, self._oldest = Tally(), None, oldest
            self._settle()
            recent = Saga.objects.all()
            if self._watermark is not None:
                recent = recent.filter(Q(created_at__gte=self._watermark) | Q(state__in=_open_states()))
            return dict(self._settled + _by_state_and_reason(recent))

    def _settle(self) -> None:
        oldest_open = Saga.objects.filter(state__in=_open_states()).aggregate(oldest=Min("created_at"))["oldest"]
        watermark = timezone.now() - SETTLED_AFTER
        if oldest_open is not None:
            watermark = min(watermark, oldest_open)
        if self._watermark is not None and watermark <= self._watermark:
            return
        newly_settled = Saga.objects.filter(created_at__lt=watermark, state__in=registry.definition().final_states)
        if self._watermark is not None:
            newly_settled = newly_settled.filter(created_at__gte=self._watermark)
        self._settled.update(_by_state_and_reason(newly_settled))
        self._watermark = watermark


def _by_state_and_reason(sagas: QuerySet[Saga]) -> Tally:
    rows = sagas.values_list("state", "failure_reason").annotate(n=Count("pk")).order_by()
    return Tally({(state, reason): n for state, reason, n in rows})


_tally = _SagaTally()


def saga_counts() -> dict[tuple[str, str], int]:
    """How many sagas there are by (state, failure reason): what /metrics reports at each scrape."""
    return _tally.counts()
