"""Writes of the orders context: placing an order (which starts its saga) and recording how it ended."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from config.kernel import sql
from config.kernel.errors import ConflictError, DomainError
from inventory.selectors import product_prices
from messaging import correlation
from messaging.outbox import publish
from orders import queries
from orders.models import Order, OrderLine
from orders.webhooks import webhooks_enqueue
from saga.services import saga_start

logger = logging.getLogger(__name__)


class UnknownSkuError(DomainError):
    code = "unknown_sku"
    http_status = 422


class OrderTooLargeError(DomainError):
    code = "order_total_too_large"
    http_status = 422


MAX_ORDER_TOTAL = Decimal("999999999999.99")  # what the 14-digit total column holds


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"


class IdempotencyKeyInUseError(ConflictError):
    code = "idempotency_key_in_use"


def order_fingerprint(*, customer_id: str, items: list[dict[str, Any]]) -> str:
    canonical = json.dumps({"customer_id": customer_id, "items": items}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_create(
    *,
    customer_id: str,
    items: list[dict[str, Any]],
    idempotency_key: str | None = None,
    answer: Callable[[Order], str] | None = None,
) -> tuple[Order, bool]:
    """Place an order: the order, its saga and the `order.created` and `payment.process` messages commit
    together. Prices come from the catalogue now.

    Returns (order, created). With an idempotency key already used for the same request, returns the first
    order and False; for another request raises IdempotencyKeyReusedError. Raises UnknownSkuError.
    A created order carries what was written with it: `placed_lines`, and `placed_saga` (state, timeline).
    Raises IdempotencyKeyInUseError when a request with the same key is still in flight after
    ORDERS_IDEMPOTENCY_WAIT_S.

    With a key, `answer(order)` renders the answer to the request that placed the order, and its text is
    written in the same transaction as `first_answer_text`: a replay finds the order and its answer, or
    neither. A concurrent request with the same key waits on the key's unique index until the first one's
    transaction ends, then gets the first order (or places its own, when the first rolled back).
    """
    fingerprint = order_fingerprint(customer_id=customer_id, items=items)
    if idempotency_key:
        earlier = _order_for_key(customer_id, idempotency_key, fingerprint)
        if earlier is not None:
            return earlier, False
    try:
        with correlation.bound(correlation_id=correlation.correlation_id.get() or correlation.new_id()):
            with transaction.atomic(durable=True):
                if idempotency_key:
                    sql.bound_lock_waits(settings.ORDERS_IDEMPOTENCY_WAIT_S)
                order = _place(customer_id, items, idempotency_key, fingerprint)
                if idempotency_key and answer is not None:
                    _keep_first_answer(order, answer(order))
            # After the commit: the line says the order exists, and carries the id its messages carry.
            logger.info(
                "order placed for %s: %s lines, total %s %s",
                customer_id,
                len(items),
                order.total,
                order.currency,
                extra={"order_id": str(order.id)},
            )
            return order, True
    except OperationalError as error:
        if idempotency_key and sql.waited_too_long_for_a_lock(error):
            raise IdempotencyKeyInUseError(
                "a request with this Idempotency-Key is still in flight; send it again shortly",
                {"idempotency_key": idempotency_key},
            ) from error
        raise
    except IntegrityError:
        # A concurrent request with the same key won the race; answer with its order.
        earlier = _order_for_key(customer_id, idempotency_key, fingerprint) if idempotency_key else None
        if earlier is None:
            raise
        return earlier, False


def _order_for_key(customer_id: str, idempotency_key: str, fingerprint: str) -> Order | None:
    # Keys are per customer: another customer's order under the same key is neither returned nor named.
    earlier = Order.objects.filter(customer_id=customer_id, idempotency_key=idempotency_key).first()
    if earlier is not None and earlier.request_fingerprint != fingerprint:
        raise IdempotencyKeyReusedError(
            "this Idempotency-Key was already used with a different request body",
            {"idempotency_key": idempotency_key, "order_id": str(earlier.id)},
        )
    return earlier


def _place(customer_id: str, items: list[dict[str, Any]], idempotency_key: str | None, fingerprint: str) -> Order:
    prices = product_prices(skus=[line["sku"] for line in items])
    unknown = sorted({line["sku"] for line in items} - set(prices))
    if unknown:
        raise UnknownSkuError("these skus are not in the catalogue", {"unknown_skus": unknown})
    lines = [
        {"sku": line["sku"], "quantity": int(line["quantity"]), "unit_price": prices[line["sku"]]} for line in items
    ]
    total = sum((line["unit_price"] * line["quantity"] for line in lines), Decimal("0.00"))
    if total > MAX_ORDER_TOTAL:
        raise OrderTooLargeError(
            "the order total is larger than an order may be", {"total": f"{total:.2f}", "limit": str(MAX_ORDER_TOTAL)}
        )
    # The order, its lines, its saga, the saga's first step and the two messages: one statement (sql.batched).
    with sql.batched():
        order = sql.insert(
            Order(
                customer_id=customer_id,
                total=total,
                currency=settings.ORDER_CURRENCY,
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
            )
        )
        # Kept on the instance, so the answer to the POST needs no second read of what was just written.
        order.placed_lines = [sql.insert(OrderLine(order=order, **line)) for line in lines]
        wire_items = [
            {"sku": line["sku"], "quantity": line["quantity"], "unit_price": f"{line['unit_price']:.2f}"}
            for line in lines
        ]
        created = publish(
            "order.created",
            {
                "order_id": str(order.id),
                "customer_id": customer_id,
                "items": wire_items,
                "total": f"{total:.2f}",
                "currency": order.currency,
            },
        )
        saga, first_step = saga_start(
            order_id=str(order.id),
            customer_id=customer_id,
            amount=total,
            currency=order.currency,
            items=wire_items,
            cause_message_id=str(created.message_id),
        )
    order.placed_saga = (saga.state, [first_step])
    return order


def _keep_first_answer(order: Order, text: str) -> None:
    # Only this column: the answer shows updated_at as it was written, and it must stay so.
    order.first_answer_text = text
    queries.order_keep_first_answer_text(order.id, text)


def order_finish(*, order_id: str, status: str, failure_reason: str = "", failure_detail: str = "") -> None:
    """Record how the order's saga ended: a stable code and a readable text, and owe the end to the webhook
    endpoints subscribed to it. Called by the saga in its own transaction (OrdersConfig.saga_listeners)."""
    failed = status != Order.Status.COMPLETED
    finished_at = timezone.now()
    queries.order_record_end(
        order_id,
        status=status,
        updated_at=finished_at,
        failure_reason=failure_reason if failed else "",
        failure_detail=(failure_detail or failure_reason)[:255] if failed else "",
    )
    webhooks_enqueue(order_id=order_id, status=status, occurred_at=finished_at)
