"""Outbox, inbox and dead letters: the rows that make delivery at-least-once and effects exactly-once."""

from __future__ import annotations

import json
import uuid

from django.db import models

from messaging import tracing
from messaging.envelope import ATTEMPT_HEADER


class OutboxMessage(models.Model):
    """A message waiting to leave, written in the same transaction as the change that caused it.

    `message_id` is the id on the wire: stable across relay retries, and kept by a dead-letter replay,
    which is a second row with the same `message_id` aimed at one queue.
    """

    message_id = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    routing_key = models.CharField(max_length=100)
    payload = models.JSONField()
    headers = models.JSONField(default=dict)
    correlation_id = models.CharField(max_length=128, blank=True, default="")
    causation_id = models.CharField(max_length=128, blank=True, default="")
    order_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # Only set for replays of a dead letter: deliver to this one queue rather than to every subscriber.
    target_queue = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    # The W3C trace context of the span that wrote the row, sent on as headers; NULL when tracing was off.
    traceparent = models.CharField(max_length=tracing.MAX_TRACEPARENT_LENGTH, null=True, blank=True)
    tracestate = models.CharField(max_length=tracing.MAX_TRACESTATE_LENGTH, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                name="outbox_unpublished_idx",
                condition=models.Q(published_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.routing_key} {self.message_id}"

    def body(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()

    def wire_properties(self) -> dict[str, str]:
        """The message properties every transport sends (DESIGN §2 envelope)."""
        return {"message_id": str(self.message_id), "correlation_id": self.correlation_id, "type": self.routing_key}

    def wire_headers(self, *, attempt: int = 1, traceparent: str | None = None) -> dict:
        """The headers every transport sends: the row's own, the causation and order ids, the attempt, and the
        trace context (`traceparent`: that of the span sending it, else the row's)."""
        headers = {
            **self.headers,
            "causation_id": self.causation_id,
            "order_id": self.order_id,
            ATTEMPT_HEADER: attempt,
        }
        if traceparent or self.traceparent:
            headers.update(tracing.context_headers(traceparent or self.traceparent, self.tracestate))
        return headers


class InboxMessage(models.Model):
    """A message a consumer has applied. Its presence makes a redelivery a no-op."""

    consumer = models.CharField(max_length=50)
    message_id = models.CharField(max_length=128)
    routing_key = models.CharField(max_length=100)
    processed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer", "message_id"], name="inbox_once_per_consumer")]

    def __str__(self) -> str:
        return f"{self.consumer} {self.message_id}"


class DeadLetter(models.Model):
    """A message that could not be handled: kept whole, with why, so that it can be replayed."""

    message_id = models.CharField(max_length=128, db_index=True)
    routing_key = models.CharField(max_length=100, db_index=True)
    queue = models.CharField(max_length=100, db_index=True)
    body = models.TextField()
    headers = models.JSONField(default=dict)
    reason = models.CharField(max_length=100, db_index=True)
    detail = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField(db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replayed_by = models.CharField(max_length=150, blank=True, default="")
    replay_count = models.PositiveIntegerField(default=0)
    discarded_at = models.DateTimeField(null=True, blank=True)
    discarded_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-last_failed_at"]

    def __str__(self) -> str:
        return f"{self.routing_key} {self.message_id} ({self.reason})"


class WorkerHeartbeat(models.Model):
    """The last sign of life of one delivery loop of one process: a consumer thread of a Celery worker, or the
    in-process dispatcher of the embedded mode. The health check reads it; `messaging.heartbeat` writes it."""

    worker = models.CharField(max_length=255)  # host:pid
    loop = models.CharField(max_length=100)  # a consumer's name, "dead_letters" or "inprocess"
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "loop"], name="heartbeat_once_per_worker_loop")]

    def __str__(self) -> str:
        return f"{self.worker} {self.loop}"
