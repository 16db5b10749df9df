"""Dead letters: store what could not be handled, and replay it through the outbox."""

from __future__ import annotations

import logging
import traceback as tb
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

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
            existing.reason, existing.detail, existing.traceback = failed.reason, failed.detail, summary
            existing.save(update_fields=["attempts", "last_failed_at", "reason", "detail", "traceback"])
            return existing
        letter = DeadLetter.objects.create(
            message_id=failed.message_id,
            routing_key=failed.routing_key,
            queue=failed.queue,
            body=failed.body,
            headers=_json_safe(failed.headers),
            reason=failed.reason,
            detail=failed.detail[:2000],
            traceback=summary,
            attempts=failed.attempts,
            first_failed_at=now,
            last_failed_at=now,
        )
    logger.warning(
        "dead-lettered %s from %s: %s %s", failed.routing_key, failed.queue, failed.reason, failed.detail,
        extra={"message_id": failed.message_id, "reason": failed.reason},
    )
    return letter


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
