"""Webhooks: how an order ended, POSTed to the servers that operators registered, through the outbox.

In the transaction that ends an order, `webhooks_enqueue` writes one `webhook.deliver` message for each active
endpoint subscribed to the event (`order.completed`, `order.failed`, `order.cancelled`): if the order ended, the
deliveries are owed, whatever process dies after. The `webhooks` consumer POSTs each one (`handle_deliver`),
outside any transaction (`messaging.bus.outward`), and records every attempt. A non-2xx answer, a timeout or a
connection error fails the attempt: the message is retried with backoff as any other, then dead-lettered, and
can be replayed from there. Delivery is at least once; the event id is the same on every attempt, for the
receiver to deduplicate on.

Every POST is signed (docs/operations.md, "Webhooks"):

    Sagaflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.utils import timezone

from config.kernel.postgresql.notices import KeptWhileHeard, NoticeListener
from messaging.bus import outward
from messaging.catalogue import FIELD_CHECKS, MessageType
from messaging.envelope import Envelope
from messaging.errors import PermanentMessageError, TransientMessageError
from messaging.outbox import publish
from messaging.retention import delete_in_batches
from orders.models import Order, WebhookAttempt, WebhookEndpoint

logger = logging.getLogger(__name__)

CONSUMER = "webhooks"
DELIVER = "webhook.deliver"
EVENT_OF_STATUS = {
    Order.Status.COMPLETED: WebhookEndpoint.Event.COMPLETED,
    Order.Status.FAILED: WebhookEndpoint.Event.FAILED,
    Order.Status.CANCELLED: WebhookEndpoint.Event.CANCELLED,
}

EVENT_ID_HEADER = "Sagaflow-Event-Id"
EVENT_TYPE_HEADER = "Sagaflow-Event-Type"
TIMESTAMP_HEADER = "Sagaflow-Timestamp"
SIGNATURE_HEADER = "Sagaflow-Signature"
SIGNATURE_VERSION = "v1"
# How old a signature a receiver should still accept: the default of `verify`, and what the docs advise.
SIGNATURE_TOLERANCE_S = 300

# An event's id follows from the order and the event: one order ends once, so every endpoint and every
# attempt sees the same id, even if the end were ever recorded twice.
_EVENT_NAMESPACE = uuid.UUID("0b8f5d7e-3c1a-4e52-9d6b-2a7f4c9e1b03")

UUID, TEXT = FIELD_CHECKS["uuid"], FIELD_CHECKS["text"]
MESSAGE_TYPES = [
    MessageType(
        DELIVER,
        "command",
        {"endpoint_id": UUID, "event_id": UUID, "event_type": TEXT, "order_id": UUID, "occurred_at": TEXT},
        producer="orders",
        summary="POST how the order ended to one webhook endpoint, signed; retried until it answers 2xx.",
    )
]


class WebhookDeliveryError(TransientMessageError):
    """The endpoint did not take the event (a non-2xx answer, a timeout, a connection error): retried."""


def event_id_of(order_id: str, event_type: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{order_id}:{event_type}"))


# The active endpoints, kept by each process that ends orders while it hears the trigger of migration orders
# 0006 tell of every change to them (config/kernel/postgresql/notices.py): the end of an order read them, a
# tenth of a worker's CPU per saga, though they change once in a long while.
ENDPOINTS_CHANNEL = "sagaflow_webhook_endpoint"
_ACTIVE = "active"
kept_endpoints = KeptWhileHeard(lambda: settings.WEBHOOK_ENDPOINTS_CACHE_S)
endpoints_listener = NoticeListener(
    kept_endpoints, ENDPOINTS_CHANNEL, what="webhook endpoint", enabled=lambda: settings.WEBHOOK_ENDPOINTS_CACHE_S > 0
)


def active_endpoints() -> list[tuple[str, list[str]]]:
    """(id, events) of each active endpoint: as this process last read them while it has heard of no change
    since, or read now."""
    endpoints_listener.ensure_running()
    kept = kept_endpoints.get(_ACTIVE)
    if kept is not None:
        return kept
    generation = kept_endpoints.generation()
    endpoints = [
        (str(endpoint_id), events if isinstance(events, list) else [])
        for endpoint_id, events in WebhookEndpoint.objects.filter(active=True).values_list("id", "events")
    ]
    kept_endpoints.keep(_ACTIVE, endpoints, generation)
    return endpoints


def webhooks_enqueue(*, order_id: str, status: str, occurred_at: Any) -> int:
    """Owe the end of an order to every active endpoint subscribed to it: one `webhook.deliver` each, in the
    caller's transaction (the one that ends the order). Returns how many."""
    event_type = EVENT_OF_STATUS.get(status)  # type: ignore[call-overload]
    if event_type is None:
        return 0
    owed = 0
    for endpoint_id, events in active_endpoints():
        if event_type in events:
            publish(
                DELIVER,
                {
                    "endpoint_id": endpoint_id,
                    "event_id": event_id_of(order_id, event_type),
                    "event_type": str(event_type),
                    "order_id": str(order_id),
                    "occurred_at": occurred_at.isoformat(),
                },
                order_id=str(order_id),
            )
            owed += 1
    return owed


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of f"{timestamp}.{body}" under `secret`."""
    signed = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={int(timestamp)},{SIGNATURE_VERSION}={sign(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: float = SIGNATURE_TOLERANCE_S, now: float | None = None
) -> bool:
    """Whether `header` (a Sagaflow-Signature) signs `body` under `secret`, at most `tolerance_s` seconds
    from `now`. What a receiver runs; the product runs it in its tests."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in parts.get(SIGNATURE_VERSION, []))


def event_body(payload: Mapping[str, Any], order: Mapping[str, Any]) -> bytes:
    """The JSON the endpoint receives: the same bytes on every attempt, as the order has ended for good."""
    event = {
        "id": payload["event_id"],
        "type": payload["event_type"],
        "created_at": payload["occurred_at"],
        "data": {
            "order": {
                "id": str(order["id"]),
                "status": order["status"],
                "customer_id": order["customer_id"],
                "total": f"{order['total']:.2f}",
                "currency": order["currency"],
                "failure_reason": order["failure_reason"],
                "failure_detail": order["failure_detail"],
            }
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


@outward
def handle_deliver(message: Envelope) -> None:
    """POST one event to one endpoint and record the attempt. Raises WebhookDeliveryError when it failed."""
    payload = message.payload
    endpoint = WebhookEndpoint.objects.filter(pk=payload["endpoint_id"]).first()
    if endpoint is None or not endpoint.active:
        logger.info(
            "webhook %s for endpoint %s not sent: the endpoint is %s",
            payload["event_type"],
            payload["endpoint_id"],
            "gone" if endpoint is None else "inactive",
            extra={"event_id": payload["event_id"]},
        )
        return
    order = (
        Order.objects.filter(pk=payload["order_id"])
        .values("id", "status", "customer_id", "total", "currency", "failure_reason", "failure_detail")
        .first()
    )
    if order is None:
        raise PermanentMessageError("order_not_found", f"no order {payload['order_id']}")
    body = event_body(payload, order)
    attempt = WebhookAttempt.objects.filter(endpoint=endpoint, event_id=payload["event_id"]).count() + 1
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "sagaflow-webhooks/1",
        EVENT_ID_HEADER: payload["event_id"],
        EVENT_TYPE_HEADER: payload["event_type"],
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(endpoint.secret, timestamp, body),
    }
    attempted_at = timezone.now()
    started = time.perf_counter()
    status_code, error = _post(endpoint.url, body, headers)
    duration_ms = (time.perf_counter() - started) * 1000
    succeeded = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not succeeded:
        error = f"HTTP {status_code}"
    WebhookAttempt.objects.create(
        endpoint=endpoint,
        event_id=payload["event_id"],
        event_type=payload["event_type"],
        order_id=payload["order_id"],
        attempt=attempt,
        status_code=status_code,
        error=error[:255],
        succeeded=succeeded,
        duration_ms=round(duration_ms, 2),
        attempted_at=attempted_at,
    )
    # The endpoint by its id and host only: a URL may carry a token in its path or query.
    where = f"endpoint {endpoint.pk} ({urlsplit(endpoint.url).hostname})"
    extra = {"event_id": payload["event_id"], "attempt": attempt, "duration_ms": round(duration_ms, 2)}
    if not succeeded:
        logger.warning("webhook %s to %s failed: %s", payload["event_type"], where, error, extra=extra)
        raise WebhookDeliveryError(f"{where} did not take {payload['event_type']}: {error}")
    logger.info("webhook %s delivered to %s: HTTP %s", payload["event_type"], where, status_code, extra=extra)


def prune_attempts(now: datetime | None = None) -> int:
    """Delete the attempts made more than WEBHOOK_ATTEMPT_RETENTION_DAYS ago. Returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_ATTEMPT_RETENTION_DAYS)
    deleted = delete_in_batches(WebhookAttempt.objects.filter(attempted_at__lt=cutoff))
    if deleted:
        logger.info("pruned %s webhook attempts older than %s days", deleted, settings.WEBHOOK_ATTEMPT_RETENTION_DAYS)
    return deleted


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """POST and return (status code, "") or (None, why not). The answer's body is never read: only its status
    counts, and a large one must not cost memory. Redirects are not followed: a 3xx is a failure."""
    try:
        with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
            with client.stream("POST", url, content=body, headers=headers) as response:
                return response.status_code, ""
    except httpx.TimeoutException as error:
        return None, f"timed out after {settings.WEBHOOK_TIMEOUT_S:g}s ({type(error).__name__})"
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:255]
    except (OSError, ValueError) as error:  # a URL httpx cannot even try
        return None, f"{type(error).__name__}: {error}"[:255]
