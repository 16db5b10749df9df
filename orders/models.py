"""Orders and their lines, priced from the catalogue when they were placed."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"
        CANCELLED = "CANCELLED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer_id = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=8)
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    failure_detail = models.CharField(max_length=255, blank=True, default="")
    # Unique per customer (see Meta): one customer's key says nothing about, and never reaches, another's order.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    # The first answer to an idempotent request, its JSON exactly as it was sent, written in the transaction
    # that places the order: there is no moment when the order exists and its answer does not.
    first_answer_text = models.TextField(null=True, blank=True, editable=False)
    # What older versions kept instead, after the commit and as jsonb (the content, not the key order); read
    # only for their orders, and never written now.
    first_answer = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not columns: what order_create wrote for the order it placed (its lines; its saga's state and first
    # transition), kept on the instance for the answer to the POST.
    placed_lines: list[OrderLine]
    placed_saga: tuple[str, list[Any]]

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer_id", "idempotency_key"], name="order_idempotency_key_per_customer"
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.id} {self.status}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["order", "sku"], name="order_line_sku_once")]


class WebhookEndpoint(models.Model):
    """A server outside that wants to hear how orders end: each event it subscribes to is POSTed to `url`,
    signed with `secret` (orders/webhooks.py), through the outbox."""

    class Event(models.TextChoices):
        COMPLETED = "order.completed"
        FAILED = "order.failed"
        CANCELLED = "order.cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=500)
    # The key of the HMAC-SHA256 signature; shared with the receiver, never shown back, never logged.
    secret = models.CharField(max_length=255)
    events = models.JSONField(default=list)  # of Event values
    active = models.BooleanField(default=True, db_index=True)
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.description or self.url


class WebhookAttempt(models.Model):
    """One POST of one event to one endpoint, whatever came of it: a status code, or the error that stopped it."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempts")
    event_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=32)
    order_id = models.UUIDField(db_index=True)
    attempt = models.PositiveIntegerField()  # 1 for the first POST of this event to this endpoint
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True, default="")
    succeeded = models.BooleanField()
    duration_ms = models.FloatField()
    attempted_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]
        indexes = [models.Index(fields=["endpoint", "event_id"], name="webhook_attempt_event_idx")]

    def __str__(self) -> str:
        outcome = self.status_code or self.error or "?"
        return f"{self.event_type} {self.event_id} attempt {self.attempt}: {outcome}"
