"""Writes of the project's own app: API tokens, rate limits and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from config.access import queries
from config.access.models import ApiToken, AuditEntry
from config.access.recent_tokens import listener, recent_tokens
from config.kernel.errors import DomainError

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "sf_"
# last_used_at is a hint for operators, not an access log: writing it once a minute per token is enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TokenError(DomainError):
    code = "invalid_token_request"


def token_hash(token: str) -> str:
    """The stored form of a token. The token is 256 random bits, so a plain SHA-256 cannot be reversed."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once, never stored
    record: ApiToken


def api_token_create(*, role: str, customer_id: str | None = None, label: str = "", by: str) -> IssuedToken:
    """Issue a token. A customer token needs a customer_id of 1 to 64 characters; an operator token takes none.

    Raises TokenError. Writes an audit entry in the same transaction.
    """
    if role not in ApiToken.Role.values:
        raise TokenError(f"role must be one of {', '.join(ApiToken.Role.values)}, got {role!r}")
    if role == ApiToken.Role.CUSTOMER and not (customer_id and len(customer_id) <= 64):
        raise TokenError("a customer token needs a customer id of 1 to 64 characters")
    if role == ApiToken.Role.OPERATOR and customer_id:
        raise TokenError("an operator token is not bound to a customer; leave the customer id out")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        record = ApiToken.objects.create(
            key_hash=token_hash(token), prefix=token[:10], role=role, customer_id=customer_id or None, label=label[:200]
        )
        audit_record(
            actor=by,
            action="api_token.create",
            target=f"api_token:{record.pk}",
            details={"role": role, "customer_id": customer_id, "prefix": record.prefix},
        )
    return IssuedToken(token=token, record=record)


def api_token_revoke(*, token: str | None = None, token_id: int | None = None, by: str) -> ApiToken:
    """Revoke a token, given in full (the command) or by id (the admin). Idempotent: revoking a revoked token
    changes nothing. Audited in the same transaction. Raises TokenError."""
    found = ApiToken.objects.select_for_update()
    with transaction.atomic():
        if token is not None:
            record = found.filter(key_hash=token_hash(token.strip())).first()
        elif token_id is not None:
            record = found.filter(pk=token_id).first()
        else:
            record = None
        if record is None:
            raise TokenError("no such token")
        recent_tokens.forget(record.key_hash)  # here at once; other processes at the commit's notice
        if record.revoked_at is None:
            record.revoked_at = timezone.now()
            record.save(update_fields=["revoked_at"])
            audit_record(
                actor=by,
                action="api_token.revoke",
                target=f"api_token:{record.pk}",
                details={"role": record.role, "customer_id": record.customer_id, "prefix": record.prefix},
            )
    return record


def api_token_authenticate(*, token: str) -> ApiToken | None:
    """The live (not revoked) token record for a presented token, or None. Touches last_used_at now and then.
    A token this process looked up lately is not looked up again while it hears of every change to tokens
    (config/access/recent_tokens.py)."""
    digest = token_hash(token)
    listener.ensure_running()
    recent = recent_tokens.get(digest)
    if recent is not None:
        return recent
    generation = recent_tokens.generation()
    record = queries.live_token(digest)
    # The lookup is by hash; comparing again in constant time costs nothing and keeps the intent plain.
    if record is None or not hmac.compare_digest(record.key_hash, digest):
        return None
    now = timezone.now()
    if record.last_used_at is None or now - record.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=record.pk).update(last_used_at=now)
        record.last_used_at = now
    recent_tokens.keep(digest, record, generation)
    return record


def audit_record(*, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None) -> AuditEntry:
    """Record one operator action (who, what, on what). Call it inside the transaction of the action itself,
    so that the entry exists if and only if the action happened."""
    entry = AuditEntry.objects.create(
        actor=(actor or "?")[:200], action=action[:100], target=target[:200], details=details or {}
    )
    logger.info("audit: %s %s %s", entry.actor, entry.action, entry.target)
    return entry


def audit_record_many(*, actor: str, action: str, targets: list[tuple[str, dict[str, Any]]]) -> None:
    """Record one operator action on many targets, each with its details, in one statement (a background job
    replaying thousands of letters); in the transaction of the action, as `audit_record`."""
    actor, action = (actor or "?")[:200], action[:100]
    AuditEntry.objects.bulk_create(
        [AuditEntry(actor=actor, action=action, target=target[:200], details=details) for target, details in targets]
    )
    logger.info("audit: %s %s %s targets", actor, action, len(targets))


def rate_limit_take(*, key: str, count: int, period_s: float, now: float | None = None) -> float:
    """Take one request from the `count` per `period_s` allowed for `key`. Returns 0.0 when it is allowed,
    else the seconds until one will be.

    The generic cell rate algorithm: a burst of `count` passes, then one request every `period_s / count`.
    One statement, atomic under concurrency, whichever web process or host asks; a refused request changes
    nothing. Runs in autocommit, outside the caller's transaction.
    """
    interval = period_s / count
    tolerance = period_s - interval
    if queries.rate_limit_take_one(key=key, interval=interval, tolerance=tolerance, now=now):
        return 0.0
    arrival = queries.rate_limit_arrival(key)
    now = time.time() if now is None else now
    return max(0.0, arrival - now - tolerance) if arrival is not None else 0.0
