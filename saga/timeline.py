"""The timeline of an order's saga, for the admin: what happened to order X, in time order, with the ids.

It merges four logs: the saga's transitions, the messages sent for the order (outbox rows), the deliveries of
those messages that each consumer applied (inbox rows), and those that ended as dead letters. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from messaging.models import DeadLetter, InboxMessage, OutboxMessage
from saga.models import SagaTransition

TRANSITION = "transition"
SENT = "sent"
HANDLED = "handled"
DEAD_LETTER = "dead letter"


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # TRANSITION, SENT, HANDLED or DEAD_LETTER
    message_type: str
    message_id: str
    what: str  # "PAYMENT_PENDING → INVENTORY_PENDING", "by payments", "published", "payments: invalid_payload"
    detail: str = ""


def saga_timeline(*, order_id: str) -> list[TimelineEntry]:
    """Every step of the order's saga and every message in and out, oldest first."""
    sent = list(OutboxMessage.objects.filter(order_id=str(order_id)).order_by("created_at", "id"))
    message_ids = {str(row.message_id) for row in sent}
    entries = [
        *_transitions(order_id),
        *(_sent(row) for row in sent),
        *_handled(message_ids),
        *_dead_letters(message_ids),
    ]
    return sorted(entries, key=lambda entry: entry.at)


def _transitions(order_id: str) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            at=step.at,
            kind=TRANSITION,
            message_type=step.message_type,
            message_id=step.message_id,
            what=f"{step.from_state or '∅'} → {step.to_state}",
            detail=f"emits {', '.join(step.emitted)}" if step.emitted else "",
        )
        for step in SagaTransition.objects.filter(saga_id=order_id).order_by("at", "id")
    ]


def _sent(row: OutboxMessage) -> TimelineEntry:
    if row.published_at is None:
        what = "pending"
    else:
        what = f"published after {(row.published_at - row.created_at).total_seconds() * 1000:.0f} ms"
    details = [
        f"caused by {row.causation_id}" if row.causation_id else "",
        f"replay to {row.target_queue}" if row.target_queue else "",
    ]
    return TimelineEntry(
        at=row.created_at,
        kind=SENT,
        message_type=row.routing_key,
        message_id=str(row.message_id),
        what=what,
        detail="; ".join(d for d in details if d),
    )


def _handled(message_ids: set[str]) -> list[TimelineEntry]:
    from messaging.bus import consumers

    # Naming the consumers lets the (consumer, message_id) unique index serve the lookup.
    rows = InboxMessage.objects.filter(consumer__in=consumers(), message_id__in=message_ids)
    return [
        TimelineEntry(
            at=row.processed_at,
            kind=HANDLED,
            message_type=row.routing_key,
            message_id=row.message_id,
            what=f"by {row.consumer}",
        )
        for row in rows
    ]


def _dead_letters(message_ids: set[str]) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            at=letter.last_failed_at,
            kind=DEAD_LETTER,
            message_type=letter.routing_key,
            message_id=letter.message_id,
            what=f"{letter.queue}: {letter.reason}",
            detail=letter.detail[:200],
        )
        for letter in DeadLetter.objects.filter(message_id__in=message_ids)
    ]
