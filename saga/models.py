"""The saga of each order, and the log of its transitions (its timeline)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models

from saga.transitions import State


class Saga(models.Model):
    StateChoices = models.TextChoices("StateChoices", [(s.value, s.value) for s in State])

    order_id = models.UUIDField(primary_key=True)
    state = models.CharField(max_length=32, choices=StateChoices.choices, db_index=True)
    state_entered_at = models.DateTimeField(db_index=True)
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    # The readable text of the failure, as the failing participant (or the saga itself) wrote it.
    failure_detail = models.CharField(max_length=255, blank=True, default="")
    customer_id = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=8)
    items = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)  # the admin lists newest first
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "state_entered_at"], name="saga_state_entered_idx")]

    def __str__(self) -> str:
        return f"saga {self.order_id} {self.state}"

    @property
    def deadline_at(self) -> datetime | None:
        """When a pending saga times out, from the deadline that the settings give its state now."""
        seconds = state_deadline_s(self.state)
        return None if seconds is None else self.state_entered_at + timedelta(seconds=seconds)


def state_deadline_s(state: str) -> float | None:
    return {
        State.PAYMENT_PENDING: settings.SAGA_PAYMENT_DEADLINE_S,
        State.INVENTORY_PENDING: settings.SAGA_INVENTORY_DEADLINE_S,
    }.get(state)


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
