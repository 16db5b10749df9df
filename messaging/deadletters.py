"""Dead letters: store what could not be handled, and replay it through the outbox."""

from __future__ import annotations

import logging
import traceback as tb
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from config.services import audit_record
from messaging.models import DeadLetter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedDelivery:
    message_id: str
    routing_key: str
    queue: str
    body: str
    headers: dict[str, Any]
    reason: str
    detail: str
    attempts: int
    error: BaseException | None = None
    traceback_text: str = ""


def dead_letter_record(failed: FailedDelivery) -> DeadLetter:
    """Store a failed delivery. A second failure of the same message in the same queue updates its row.

    Idempotent per (message_id, queue) while the row has not been replayed.
    """
    now = timezone.now()
    summary = failed.traceback_text or (
        "".join(tb.format_exception(failed.error, limit=8))[-4000:] if failed.error else ""
    )
    with transaction.atomic():
        existing = (
            DeadLetter.objects.select_for_update()
            .filter(message_id=failed.message_id, queue=failed.queue, replayed_at__isnull=True)
            .first()
        )
        if existing is not None:
            existing.attempts = max(existing.attempts, failed.attempts)
            existing.last_failed_at = now
            existing.reason = _json_safe(failed.reason)[:100]
            existing.detail, existing.traceback = _json_safe(failed.detail)[:2000], _json_safe(summary)
            existing.save(update_fields=["attempts", "last_failed_at", "reason", "detail", "traceback"])
            return existing
        letter = DeadLetter.objects.create(
            message_id=failed.message_id,
            routing_key=failed.routing_key,
            queue=failed.queue,
            body=failed.body,
            headers=_json_safe(failed.headers),
            reason=_json_safe(failed.reason)[:100],
            detail=_json_safe(failed.detail)[:2000],
            traceback=_json_safe(summary),
            attempts=failed.attempts,
            first_failed_at=now,
            last_failed_at=now,
        )
    logger.warning(
        "dead-lettered %s from %s: %s %s", failed.routing_key, failed.queue, failed.reason, failed.detail,
        extra={"message_id": failed.message_id, "reason": failed.reason},
    )
    return letter


def storable_body(body: bytes | str) -> str:
    """The body as text a database can hold: UTF-8 text as is, anything else base64 with a prefix."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        import base64

        return "base64:" + base64.b64encode(body).decode()
    return text


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


class ReplayRefusedError(Exception):
    def __init__(self, letter: DeadLetter, why: str):
        super().__init__(f"dead letter {letter.pk} ({letter.routing_key} {letter.message_id}): {why}")
        self.why = why


@dataclass(frozen=True)
class ReplayPlan:
    letter: DeadLetter
    action: str  # "replay", "refuse"
    why: str
    inbox_duplicate: bool

    def describe(self) -> str:
        dup = " (the inbox has applied it already: it will be skipped as a duplicate)" if self.inbox_duplicate else ""
        return (f"#{self.letter.pk} {self.letter.routing_key} {self.letter.message_id} -> {self.letter.queue}: "
                f"{self.action}{': ' + self.why if self.why else ''}{dup}")


def dead_letter_plan(letter: DeadLetter, *, force: bool = False) -> ReplayPlan:
    """What a replay of `letter` would do, without doing it."""
    from messaging.models import InboxMessage

    duplicate = InboxMessage.objects.filter(consumer=letter.queue, message_id=letter.message_id).exists()
    if letter.discarded_at is not None and not force:
        return ReplayPlan(letter, "refuse", "discarded; use --force to replay anyway", duplicate)
    if letter.replayed_at is not None and not force:
        return ReplayPlan(letter, "refuse", f"already replayed at {letter.replayed_at:%Y-%m-%d %H:%M:%S} by "
                                            f"{letter.replayed_by or '?'}; use --force to replay again", duplicate)
    if _payload_of(letter) is None:
        return ReplayPlan(letter, "refuse", "the body is not a JSON object and can never be handled", duplicate)
    return ReplayPlan(letter, "replay", "", duplicate)


def _payload_of(letter: DeadLetter) -> dict | None:
    import json

    try:
        payload = json.loads(letter.body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def dead_letter_replay(*, letter: DeadLetter, by: str, force: bool = False) -> ReplayPlan:
    """Send a dead letter back to its queue through the outbox, with its original message id.

    Refuses a second replay unless `force`. Records when and by whom, and writes the audit log in the same
    transaction. Raises ReplayRefusedError.
    """
    from messaging.outbox import republish

    with transaction.atomic(durable=True):
        letter = DeadLetter.objects.select_for_update().get(pk=letter.pk)
        plan = dead_letter_plan(letter, force=force)
        if plan.action != "replay":
            raise ReplayRefusedError(letter, plan.why)
        headers = letter.headers or {}
        republish(message_id=letter.message_id, routing_key=letter.routing_key, payload=_payload_of(letter),
                  target_queue=letter.queue, correlation_id=str(headers.get("correlation_id", "")),
                  causation_id=str(headers.get("causation_id", "")), order_id=str(headers.get("order_id", "")))
        letter.replayed_at = timezone.now()
        letter.replayed_by = by[:150]
        letter.replay_count += 1
        letter.save(update_fields=["replayed_at", "replayed_by", "replay_count"])
        audit_record(actor=by, action="dead_letter.replay", target=f"dead_letter:{letter.pk}",
                     details={"message_id": letter.message_id, "routing_key": letter.routing_key,
                              "queue": letter.queue, "forced": force, "replay_count": letter.replay_count})
    logger.warning("dead letter %s replayed by %s", letter.pk, by, extra={"message_id": letter.message_id})
    return plan


def dead_letter_discard(*, letter: DeadLetter, by: str) -> None:
    """Mark a dead letter as looked at and not to be replayed. Audited; discarding it again changes nothing."""
    with transaction.atomic(durable=True):
        discarded = DeadLetter.objects.filter(pk=letter.pk, discarded_at__isnull=True).update(
            discarded_at=timezone.now(), discarded_by=by[:150])
        if discarded:
            audit_record(actor=by, action="dead_letter.discard", target=f"dead_letter:{letter.pk}",
                         details={"message_id": letter.message_id, "routing_key": letter.routing_key})
    logger.warning("dead letter %s discarded by %s", letter.pk, by, extra={"message_id": letter.message_id})
