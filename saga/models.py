"""The saga of each order, and the log of its transitions (its timeline)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from saga import registry


class Saga(models.Model):
    order_id = models.UUIDField(primary_key=True)
    # A state of the saga definition in use (saga.registry): no choices, so that a step added to the
    # definition needs no migration.
    state = models.CharField(max_length=32, db_index=True)
    state_entered_at = models.DateTimeField()  # indexed first in saga_entered_cover_idx
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    # The readable text of the failure, as the failing participant (or the saga itself) wrote it.
    failure_detail = models.CharField(max_length=255, blank=True, default="")
    customer_id = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=8)
    items = models.JSONField()
    # Past the pending states the saga waits on what it sent, not on a deadline of the state: the refund while
    # COMPENSATING, the release of its stock once failed. These count the sends in the current
    # state, and say when the sweep next looks whether the last one took effect, and sends it again if not.
    # A plain integer with a database default: adding it neither scans the table (as a CHECK would) nor breaks
    # the inserts of a process still running the previous release.
    compensation_attempts = models.IntegerField(default=0, db_default=0)
    compensation_due_at = models.DateTimeField(null=True, blank=True)
    # When the saga first sent a release that its participant does not answer (the order saga's
    # inventory.release). Only such a saga can end with that work still held, so the sweep looks at these
    # alone: a partial index keeps them few among millions of ended sagas.
    release_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)  # the admin lists newest first
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "state_entered_at"], name="saga_state_entered_idx"),
            # The sagas that entered a state in a time range, and what the operations overview counts of them
            # (state, reason, time from the order), read from the index alone: no visit to the table's rows.
            models.Index(
                fields=["state_entered_at", "state", "failure_reason", "created_at"], name="saga_entered_cover_idx"
            ),
            models.Index(
                fields=["release_sent_at"], name="saga_release_sent_idx", condition=Q(release_sent_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"saga {self.order_id} {self.state}"

    @property
    def deadline_at(self) -> datetime | None:
        """When the sweep acts on a saga that has not moved: a pending one times out at the deadline that the
        settings give its state now; a compensating one sends its compensation again (the order saga: its
        refund). None once it has ended, or in a state the sweep does not watch."""
        definition = registry.definition()
        if self.state in definition.resending_states:
            return self.compensation_due_at or self.state_entered_at
        seconds = state_deadline_s(self.state) if self.state in definition.pending_states else None
        return None if seconds is None else self.state_entered_at + timedelta(seconds=seconds)

    @property
    def compensation_flagged(self) -> bool:
        """Compensating after the last attempt the settings allow: an operator should look."""
        compensating = self.state in registry.definition().compensating_states
        return compensating and compensation_flagged(self.compensation_attempts)


def state_deadline_s(state: str) -> float | None:
    """How long a saga may stay in `state`, in seconds: the deadline the definition in use gives the state, a
    setting's value when it names one. None: the state has none (the ends)."""
    deadline = registry.definition().deadlines.get(state)
    return float(getattr(settings, deadline)) if isinstance(deadline, str) else deadline


def compensation_wait_s(attempts: int, *, state: str | None = None) -> float:
    """How long the saga waits, in `state`, for its `attempts`-th send to take effect: the state's deadline
    (SAGA_COMPENSATION_DEADLINE_S for a state without one, as the ends), doubled at each attempt after the
    first, up to the cap; at the cap once the saga is flagged."""
    if compensation_flagged(attempts):
        return settings.SAGA_COMPENSATION_BACKOFF_MAX_S
    base = (state_deadline_s(state) if state else None) or settings.SAGA_COMPENSATION_DEADLINE_S
    doubled = base * 2 ** min(max(attempts - 1, 0), 64)
    return min(doubled, settings.SAGA_COMPENSATION_BACKOFF_MAX_S)


def compensation_flagged(attempts: int) -> bool:
    return attempts >= settings.SAGA_COMPENSATION_MAX_ATTEMPTS


def tracks_compensation(state: str) -> bool:
    """Whether the saga, in `state`, waits on what it sent rather than on a deadline of the state."""
    return state not in registry.definition().pending_states


class SagaTransition(models.Model):
    """One line of the timeline: a message the saga applied, and the state before and after."""

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=32, blank=True, default="")
    to_state = models.CharField(max_length=32)
    message_type = models.CharField(max_length=100)
    message_id = models.CharField(max_length=128, blank=True, default="")
    emitted = models.JSONField(default=list)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or '∅'} → {self.to_state} on {self.message_type}"
