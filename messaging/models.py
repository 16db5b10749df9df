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
    # Set on a row the worker that wrote it may hand to its own consumers (messaging/handoff.py): the relay leaves
    # it alone until then. `handed_off`: it went that way, not through the broker.
    handoff_until = models.DateTimeField(null=True, blank=True)
    handed_off = models.BooleanField(default=False, db_default=False)  # a row written by SQL alone too

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
    # The failure, without its ids and numbers (`messaging.fingerprints`): what groups letters of one failure.
    fingerprint = models.CharField(max_length=16, blank=True, default="", db_index=True)
    # The letter this one's message was replayed from, when it failed again: one history, attempts carried over.
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="later_letters", db_index=True
    )
    # A payload an operator corrected (JSON) and replayed instead of the body, which stays as it came.
    edited_body = models.TextField(blank=True, default="")
    edited_by = models.CharField(max_length=150, blank=True, default="")
    edited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_failed_at"]
        indexes = [
            # The groups of the letters still waiting (DeadLetterGroup): one pass over this index, not the table.
            models.Index(
                fields=["queue", "routing_key", "reason", "fingerprint", "first_failed_at", "last_failed_at"],
                name="deadletter_open_group_idx",
                condition=models.Q(replayed_at__isnull=True, discarded_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.routing_key} {self.message_id} ({self.reason})"


class DeadLetterGroup(models.Model):
    """The dead letters still waiting (neither replayed nor discarded), one row per queue, type, reason and
    fingerprint: a database view over DeadLetter's group index (migration 0007), read-only.

    A later migration that changes DeadLetter's table must drop this view first and create it again after it:
    SQLite rebuilds the table (and fails with the view in place), PostgreSQL refuses to change a column a view
    reads.
    """

    id = models.BigIntegerField(primary_key=True)  # the group's first letter
    queue = models.CharField(max_length=100)
    routing_key = models.CharField(max_length=100)
    reason = models.CharField(max_length=100)
    fingerprint = models.CharField(max_length=16)
    letters = models.BigIntegerField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "messaging_deadlettergroup"
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"{self.queue} {self.routing_key} {self.reason} {self.fingerprint} ({self.letters})"

    def selection(self) -> dict[str, str]:
        return {
            "queue": self.queue,
            "routing_key": self.routing_key,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
        }


class ReplayJob(models.Model):
    """A replay (or discard) of every waiting dead letter a selection matches, run in the background in batches
    at a bounded rate (`messaging.replays`). Its counts say how far it got; it can be paused and resumed."""

    REPLAY, DISCARD = "replay", "discard"
    RUNNING, PAUSED, STOPPED, DONE = "running", "paused", "stopped", "done"
    ACTIONS = [(REPLAY, "replay"), (DISCARD, "discard")]
    STATES = [(RUNNING, "running"), (PAUSED, "paused"), (STOPPED, "stopped"), (DONE, "done")]

    action = models.CharField(max_length=10, choices=ACTIONS, default=REPLAY)
    # The selection: blank is any. `letter_ids` narrows it to those letters; `force` takes replayed ones too.
    queue = models.CharField(max_length=100, blank=True, default="")
    routing_key = models.CharField(max_length=100, blank=True, default="")
    reason = models.CharField(max_length=100, blank=True, default="")
    fingerprint = models.CharField(max_length=16, blank=True, default="")
    letter_ids = models.JSONField(default=list, blank=True)
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    force = models.BooleanField(default=False)
    limit = models.PositiveIntegerField(null=True, blank=True)
    batch_size = models.PositiveIntegerField()
    rate_per_s = models.FloatField()
    state = models.CharField(max_length=10, choices=STATES, default=RUNNING, db_index=True)
    total = models.PositiveIntegerField(default=0)  # the letters it matched when it was started
    done = models.PositiveIntegerField(default=0)  # replayed (or discarded)
    refused = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cursor = models.BigIntegerField(default=0)  # the last letter id it has been through
    # The newest letter when it started: a letter stored later (its own replays failing again) is not its own.
    up_to = models.BigIntegerField(default=0)
    last_problem = models.TextField(blank=True, default="")
    started_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} job {self.pk} ({self.state}, {self.done}/{self.total})"

    def selection(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("queue", self.queue),
                ("type", self.routing_key),
                ("reason", self.reason),
                ("fingerprint", self.fingerprint),
            )
            if value
        ]
        if self.letter_ids:
            parts.append(f"{len(self.letter_ids)} chosen letters")
        return ", ".join(parts) or "every waiting letter"


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
