"""Dead letters: store what could not be handled, and replay it through the outbox.

A dead letter is never dropped for what it holds. A value that does not fit its column (an id, a type, a queue
or a reason too long, not text, or with characters that are not printable) is cut down or escaped there, and
the original is kept in the letter's headers under ORIGINAL. A message without an id is stored under one
derived from its content (`letter_message_id`). Headers are made storable as JSON, a body that is not UTF-8
text is kept in base64, and a letter that still cannot be stored is stored minimal, saying why.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import traceback as tb
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from config.access.services import audit_record
from messaging.correlation import clean_id, printable
from messaging.envelope import MAX_ATTEMPT, MAX_ORDER_ID_LENGTH, attempt_number, bounded_int, usable_message_id
from messaging.errors import is_transient
from messaging.fingerprints import error_fingerprint
from messaging.models import DeadLetter

logger = logging.getLogger(__name__)

ORIGINAL = "x-sagaflow-original"
UNSTORABLE = "x-sagaflow-unstorable"
# Set by a replay: the id of the letter it replays. A letter of the same message stored later links to that one.
REPLAY_OF = "x-sagaflow-replay-of"
# Headers that change each time the same message is dead-lettered again: left out of its fingerprint.
_VOLATILE_HEADERS = ("x-death", "x-delivery-count", "x-first-death-", "x-last-death-", "x-sagaflow-", "x-attempt")
_FINGERPRINT_NAMESPACE = uuid.UUID("5b1f3c1e-4f0e-4d6a-9a43-6f0d1c8e2a17")
_MAX_HEADER_DEPTH = 16
_MAX_DETAIL = 2000
_MAX_TRACEBACK = 8000


@dataclass(frozen=True)
class FailedDelivery:
    message_id: Any  # as it came: "" or None when the message had none
    routing_key: Any
    queue: Any
    body: str
    headers: dict[str, Any]
    reason: str
    detail: str
    attempts: int
    error: BaseException | None = None
    traceback_text: str = ""


def dead_letter_record(failed: FailedDelivery) -> DeadLetter:
    """Store a failed delivery, whatever it holds. A second failure of the same message (same id and body) in
    the same queue updates its row: idempotent per (message_id, queue, body) while the row is not replayed.

    Raises only when the database cannot take it now (the caller keeps the message and tries again later): a
    letter that cannot be stored whole is stored minimal instead, with why under UNSTORABLE in its headers.
    """
    columns = _columns(failed)
    try:
        letter = _stored(columns)
    except Exception as error:  # noqa: BLE001 - anything but an outage: store what surely fits
        if is_transient(error):
            raise
        letter = _stored(_minimal(columns, error))
    logger.warning(
        "dead-lettered %s from %s: %s %s",
        letter.routing_key,
        letter.queue,
        letter.reason,
        printable(letter.detail)[:500],
        extra={"message_id": letter.message_id, "reason": letter.reason},
    )
    return letter


def letter_message_id(failed: FailedDelivery) -> str:
    """The id a dead letter is stored under: its message's own when that can be one; when it is too long or
    not printable text, one derived from it (cut, and a hash of the whole); when it has none, a UUID derived
    from the message's queue, type, body and headers, so the same message is stored once and two different
    ones twice. Such a UUID can be replayed: a message without an id was never applied by any consumer."""
    if usable_message_id(failed.message_id):
        return failed.message_id
    if failed.message_id in (None, "", b""):
        return str(uuid.uuid5(_FINGERPRINT_NAMESPACE, _fingerprint(failed)))
    text = printable(failed.message_id)
    digest = hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    return f"{text[:100]}~{digest}"


def originals_of(failed: FailedDelivery) -> dict[str, Any]:
    """The original of every id, type, queue or reason of `failed` that its dead letter stores changed."""
    return _identity(failed)[1]


def _identity(failed: FailedDelivery) -> tuple[dict[str, str], dict[str, Any]]:
    """The message_id, routing_key, queue and reason columns of the letter of `failed`, and the originals of
    those that had to be changed to fit."""
    original: dict[str, Any] = {}
    message_id = letter_message_id(failed)
    if message_id != failed.message_id:
        original["message_id"] = None if failed.message_id in (None, "", b"") else json_safe(failed.message_id)
    columns = {"message_id": message_id}
    for name in ("routing_key", "queue", "reason"):
        columns[name] = _fitted(getattr(failed, name), 100, name, original)
    if not columns["reason"]:  # a letter is found and grouped by its reason: an empty one (a header's) says none
        original.setdefault("reason", json_safe(failed.reason))
        columns["reason"] = "unknown"
    return columns, original


def _columns(failed: FailedDelivery) -> dict[str, Any]:
    identity, original = _identity(failed)
    headers = json_safe(failed.headers) if isinstance(failed.headers, dict) else {"headers": json_safe(failed.headers)}
    upstream = headers.get(ORIGINAL)
    if original or isinstance(upstream, dict):
        # The consumer's, when the letter came through the dead-letter queue; this store's own win over them
        # (they agree, but a message may carry a header of that name of its own).
        headers[ORIGINAL] = {**(upstream if isinstance(upstream, dict) else {}), **original}
    detail = _text(failed.detail)[:_MAX_DETAIL]
    summary = _text(_summary_of(failed))[-_MAX_TRACEBACK:]
    return {
        **identity,
        "body": storable_body(failed.body),
        "headers": headers,
        "detail": detail,
        "traceback": summary,
        "attempts": attempt_number(failed.attempts),
        "fingerprint": error_fingerprint(identity["reason"], summary, detail),
    }


def _fitted(value: Any, limit: int, name: str, original: dict[str, Any]) -> str:
    """`value` as it fits a column of `limit` characters; the original kept in `original` when it changed."""
    text = printable(value)
    if text != value or len(text) > limit:
        original[name] = json_safe(value)
    return text[:limit]


def _minimal(columns: dict[str, Any], error: Exception) -> dict[str, Any]:
    why = printable(f"{type(error).__name__}: {error}")[:_MAX_DETAIL]
    logger.error("dead letter %s stored without its headers: %s", columns["message_id"], why)
    kept = {ORIGINAL: columns["headers"].get(ORIGINAL, {})}
    return {**columns, "headers": {**kept, UNSTORABLE: why}, "detail": columns["detail"][:_MAX_DETAIL], "traceback": ""}


def _stored(columns: dict[str, Any]) -> DeadLetter:
    now = timezone.now()
    with transaction.atomic():
        existing = (
            DeadLetter.objects.select_for_update()
            .filter(
                message_id=columns["message_id"], queue=columns["queue"], replayed_at__isnull=True, body=columns["body"]
            )  # another message that took the same id is a letter of its own
            .first()
        )
        if existing is None:
            previous = _replayed_from(columns)
            if previous is not None:
                columns = {**columns, "previous": previous, "attempts": _attempts_after(previous, columns)}
            return DeadLetter.objects.create(**columns, first_failed_at=now, last_failed_at=now)
        existing.attempts = max(existing.attempts, columns["attempts"])
        existing.last_failed_at = now
        existing.reason, existing.detail = columns["reason"], columns["detail"]
        existing.traceback, existing.fingerprint = columns["traceback"], columns["fingerprint"]
        existing.save(update_fields=["attempts", "last_failed_at", "reason", "detail", "traceback", "fingerprint"])
        return existing


def _replayed_from(columns: dict[str, Any]) -> DeadLetter | None:
    """The earlier letter this message was replayed from: named by the replay's header, and only when that
    letter is one of the same message in the same queue (a header of the message's own proves nothing)."""
    letter_id = bounded_int(columns["headers"].get(REPLAY_OF), 0) if isinstance(columns["headers"], dict) else 0
    if letter_id <= 0:
        return None
    return DeadLetter.objects.filter(
        pk=letter_id, message_id=columns["message_id"], queue=columns["queue"], replayed_at__isnull=False
    ).first()


def _attempts_after(previous: DeadLetter, columns: dict[str, Any]) -> int:
    return min(previous.attempts + columns["attempts"], MAX_ATTEMPT)


def _summary_of(failed: FailedDelivery) -> str:
    if failed.traceback_text or failed.error is None:
        return failed.traceback_text if isinstance(failed.traceback_text, str) else printable(failed.traceback_text)
    try:
        return "".join(tb.format_exception(failed.error, limit=8))[-4000:]
    except Exception:  # noqa: BLE001 - a summary is a help, never a reason not to store
        return f"{type(failed.error).__name__} (its traceback could not be formatted)"


def _fingerprint(failed: FailedDelivery) -> str:
    headers = failed.headers if isinstance(failed.headers, dict) else {}
    stable = {
        key: value for key, value in headers.items() if not (isinstance(key, str) and key.startswith(_VOLATILE_HEADERS))
    }
    parts = [printable(failed.queue), printable(failed.routing_key), storable_body(failed.body), json_safe(stable)]
    return json.dumps(parts, sort_keys=True)


def storable_body(body: Any) -> str:
    """The body as text a database can hold: UTF-8 text as is, anything else base64 with a prefix."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    elif not isinstance(body, (bytes, bytearray, memoryview)):
        body = printable(body).encode()
    body = bytes(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return "base64:" + base64.b64encode(body).decode()
    return text


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` as JSON that PostgreSQL's jsonb takes: text without NUL or lone surrogates, finite numbers,
    bytes as text (base64 when not UTF-8), and what nests deeper than a few levels as its text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return storable_body(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)) and depth >= _MAX_HEADER_DEPTH:
        return _text(printable(value))
    if isinstance(value, dict):
        return {
            _text(key if isinstance(key, str) else json_safe(key, depth + 1)): json_safe(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [json_safe(item, depth + 1) for item in value]
    return _text(printable(value))


def _text(value: Any) -> str:
    """Text a PostgreSQL text or jsonb value can hold: no NUL, and lone surrogates escaped."""
    text = value if isinstance(value, str) else printable(value)
    text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dead_letter_label(letter: DeadLetter) -> str:
    """How an operator's report names a letter: "dead letter 12 (payment.process <message id>)"."""
    return f"dead letter {letter.pk} ({letter.routing_key} {letter.message_id})"


class ReplayRefusedError(Exception):
    def __init__(self, letter: DeadLetter, why: str):
        super().__init__(f"{dead_letter_label(letter)}: {why}")
        self.why = why


@dataclass(frozen=True)
class ReplayPlan:
    letter: DeadLetter
    action: str  # "replay", "refuse"
    why: str
    inbox_duplicate: bool

    def describe(self) -> str:
        dup = " (the inbox has applied it already: it will be skipped as a duplicate)" if self.inbox_duplicate else ""
        return (
            f"#{self.letter.pk} {self.letter.routing_key} {self.letter.message_id} -> {self.letter.queue}: "
            f"{self.action}{': ' + self.why if self.why else ''}{dup}"
        )


def dead_letter_plan(letter: DeadLetter, *, force: bool = False) -> ReplayPlan:
    """What a replay of `letter` would do, without doing it: replay it, or refuse, saying why."""
    from messaging.models import InboxMessage

    duplicate = InboxMessage.objects.filter(consumer=letter.queue, message_id=letter.message_id).exists()
    why_not = why_not_replayable(letter, force=force)
    if why_not:
        return ReplayPlan(letter, "refuse", why_not, duplicate)
    return ReplayPlan(letter, "replay", replay_note(letter), duplicate)


def why_not_replayable(letter: DeadLetter, *, force: bool) -> str:
    from messaging import bus

    if letter.discarded_at is not None and not force:
        return "discarded; use --force to replay anyway"
    if letter.replayed_at is not None and not force:
        return (
            f"already replayed at {letter.replayed_at:%Y-%m-%d %H:%M:%S} by {letter.replayed_by or '?'}; "
            "use --force to replay again"
        )
    if letter.queue not in bus.consumers():
        return f"{letter.queue!r} is not the queue of a consumer, so there is nowhere to send it"
    if letter.routing_key not in bus.registry()[letter.queue]:
        return f"{letter.queue} has no handler for {letter.routing_key!r}: it would only be dead-lettered again"
    if not _is_uuid(letter.message_id):
        return (
            f"its message_id {letter.message_id!r} is not a UUID: a replay keeps the message's id, by which "
            "the inbox guards its effects, and the outbox sends UUIDs only"
        )
    if _payload_of(letter) is None:
        return "the body is not a JSON object and can never be handled"
    return ""


def replay_note(letter: DeadLetter) -> str:
    """What an operator should know of a replay of `letter`, or ""."""
    original = letter.headers.get(ORIGINAL) if isinstance(letter.headers, dict) else None
    if isinstance(original, dict) and "message_id" in original and original["message_id"] is None:
        return "its message had no id: it is replayed under the one it was stored with"
    return ""


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _payload_of(letter: DeadLetter) -> dict | None:
    """What a replay sends: the payload an operator corrected, when there is one, else the body as it came."""
    try:
        payload = json.loads(letter.edited_body or letter.body)
    except Exception:  # noqa: BLE001 - not JSON, or too deep (RecursionError): not a payload either way
        return None
    return payload if isinstance(payload, dict) else None


def dead_letter_replay(*, letter: DeadLetter, by: str, force: bool = False) -> ReplayPlan:
    """Send a dead letter back to its queue through the outbox, with its original message id.

    Refuses a second replay unless `force`, and a letter that cannot be replayed (`dead_letter_plan`), by
    raising ReplayRefusedError with why. Records when and by whom, and writes the audit log in the same
    transaction: whatever else it raises leaves the letter as it was.
    """
    with transaction.atomic(durable=True):
        letter = DeadLetter.objects.select_for_update().get(pk=letter.pk)
        plan = dead_letter_plan(letter, force=force)
        if plan.action != "replay":
            raise ReplayRefusedError(letter, plan.why)
        replay_in_transaction(letter, by=by)
        audit_record(
            actor=by,
            action="dead_letter.replay",
            target=f"dead_letter:{letter.pk}",
            details={
                "message_id": letter.message_id,
                "routing_key": letter.routing_key,
                "queue": letter.queue,
                "forced": force,
                "replay_count": letter.replay_count,
            },
        )
    logger.warning("dead letter %s replayed by %s", letter.pk, by, extra={"message_id": letter.message_id})
    return plan


def replay_in_transaction(letter: DeadLetter, *, by: str) -> None:
    """Write the outbox row of a replay and mark the letter replayed, in the caller's transaction: the letter is
    marked if and only if its message is sent again. The caller has checked it can be (`dead_letter_plan`)."""
    from messaging.outbox import republish

    republish(**replay_message(letter))
    letter.replayed_at = timezone.now()
    letter.replayed_by = by[:150]
    letter.replay_count += 1
    letter.save(update_fields=["replayed_at", "replayed_by", "replay_count"])


def replay_message(letter: DeadLetter) -> dict[str, Any]:
    """The outbox columns of a letter's replay: its own message id, aimed at its queue, with REPLAY_OF."""
    from messaging.catalogue import SCHEMA_VERSION

    headers = letter.headers if isinstance(letter.headers, dict) else {}
    return {
        "message_id": letter.message_id,
        "routing_key": letter.routing_key,
        "payload": _payload_of(letter),
        "target_queue": letter.queue,
        "correlation_id": clean_id(headers.get("correlation_id")),
        "causation_id": clean_id(headers.get("causation_id")),
        "order_id": clean_id(headers.get("order_id"), limit=MAX_ORDER_ID_LENGTH),
        "headers": {"version": SCHEMA_VERSION, REPLAY_OF: letter.pk},
    }


class InvalidCorrectionError(ValueError):
    """A correction of a letter's payload that is not a JSON object."""


def dead_letter_edit_and_replay(*, letter: DeadLetter, payload_text: str, by: str) -> ReplayPlan:
    """Replay a letter with a payload an operator corrected. The body stays as it came; the correction is kept
    beside it and audited with both; the message keeps its id, so a consumer that applied it once skips it.

    Raises InvalidCorrectionError when the text is not a JSON object, ReplayRefusedError as a replay does."""
    try:
        payload = json.loads(payload_text)
    except (ValueError, RecursionError) as error:
        raise InvalidCorrectionError(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidCorrectionError(f"the payload must be a JSON object, not {type(payload).__name__}")
    edited = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    with transaction.atomic(durable=True):
        letter = DeadLetter.objects.select_for_update().get(pk=letter.pk)
        before = letter.edited_body or letter.body
        letter.edited_body, letter.edited_by, letter.edited_at = edited, by[:150], timezone.now()
        plan = dead_letter_plan(letter, force=True)  # this letter, chosen and corrected: replayed or not
        if plan.action != "replay":
            raise ReplayRefusedError(letter, plan.why)
        letter.save(update_fields=["edited_body", "edited_by", "edited_at"])
        replay_in_transaction(letter, by=by)
        audit_record(
            actor=by,
            action="dead_letter.edit_and_replay",
            target=f"dead_letter:{letter.pk}",
            details={
                "message_id": letter.message_id,
                "routing_key": letter.routing_key,
                "queue": letter.queue,
                "before": before[:_MAX_DETAIL],
                "after": edited[:_MAX_DETAIL],
                "replay_count": letter.replay_count,
            },
        )
    logger.warning("dead letter %s edited and replayed by %s", letter.pk, by, extra={"message_id": letter.message_id})
    return plan


def dead_letter_discard(*, letter: DeadLetter, by: str) -> None:
    """Mark a dead letter as looked at and not to be replayed. Audited; discarding it again changes nothing."""
    with transaction.atomic(durable=True):
        discarded = DeadLetter.objects.filter(pk=letter.pk, discarded_at__isnull=True).update(
            discarded_at=timezone.now(), discarded_by=by[:150]
        )
        if discarded:
            audit_record(
                actor=by,
                action="dead_letter.discard",
                target=f"dead_letter:{letter.pk}",
                details={"message_id": letter.message_id, "routing_key": letter.routing_key},
            )
    logger.warning("dead letter %s discarded by %s", letter.pk, by, extra={"message_id": letter.message_id})
