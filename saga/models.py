"""The saga of each order, and the log of its transitions (its timeline)."""

from __future__ import annotations

from django.db import models

from saga.transitions import State


class Saga(models.Model):
    StateChoices = models.TextChoices("StateChoices", [(s.value, s.value) for s in State])

    order_id = models.UUIDField(primary_key=True)
    state = models.CharField(max_length=32, choices=StateChoices.choices, db_index=True)
    deadline_at = models.DateTimeField(null=True, blank=True, db_index=True)
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    customer_id = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=8)
    items = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "deadline_at"], name="saga_state_deadline_idx")]

    def __str__(self) -> str:
        return f"saga {self.order_id} {self.state}"


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
