"""Helpers for integration tests: place orders, deliver outbox rows as a transport would, read the rows back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
from django.db import connections, transaction
from django.utils import timezone

from inventory.models import Product
from messaging import bus, inprocess
from messaging.consumers import handle_delivery
from messaging.envelope import Envelope
from messaging.models import DeadLetter, OutboxMessage
from orders.models import Order
from orders.services import order_create
from payments.models import Account, LedgerEntry, Payment
from payments.services import ledger_totals
from saga.models import Saga
from tests.plugin import worker_database_url
from tests.processes import wait_for


def elsewhere(sql: str, *params: Any) -> None:
    """A statement of another process, committed."""
    with psycopg.connect(worker_database_url(), autocommit=True) as other:
        other.execute(sql, params)


@contextmanager
def kept_while_heard(listener: Any, settings: Any, setting: str) -> Iterator[None]:
    """What `listener` tells of kept as the product keeps it (`setting`, a number of seconds, at 60), with the
    listener hearing the database; stopped again afterwards (config/kernel/postgresql/notices.py)."""
    listener.stop()
    setattr(settings, setting, 60.0)
    listener.ensure_running()
    wait_for(listener.kept.trusted, timeout=10, message=f"the {listener.what} listener to hear the database")
    try:
        yield
    finally:
        listener.stop()


@contextmanager
def in_another_transaction(work: Callable[[], Any]) -> Iterator[Any]:
    """Run `work` in a transaction on another connection and keep that transaction, and the locks it took,
    open until the block ends. Yields what `work` returned."""
    done, release = threading.Event(), threading.Event()
    returned: list[Any] = []

    def run() -> None:
        try:
            with transaction.atomic():
                returned.append(work())
                done.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert done.wait(10), "the other transaction did not finish its work"
        yield returned[0]
    finally:
        release.set()
        thread.join(10)


def place(customer_id: str, *lines: tuple[str, int]) -> str:
    """Place an order through the service, as the API does; returns its id."""
    order, created = order_create(
        customer_id=customer_id, items=[{"sku": sku, "quantity": quantity} for sku, quantity in lines]
    )
    assert created
    return str(order.id)


def envelope_of(row: OutboxMessage, **changes) -> Envelope:
    """The envelope a consumer would receive for an outbox row."""
    fields = dict(
        message_id=str(row.message_id),
        routing_key=row.routing_key,
        payload=row.payload,
        correlation_id=row.correlation_id,
        causation_id=row.causation_id,
        order_id=row.order_id,
    )
    fields.update(changes)
    return Envelope(**fields)


def outbox(order_id: str, routing_key: str | None = None) -> list[OutboxMessage]:
    rows = OutboxMessage.objects.filter(order_id=order_id).order_by("created_at", "id")
    if routing_key:
        rows = rows.filter(routing_key=routing_key)
    return list(rows)


def outbox_keys(order_id: str) -> list[str]:
    return [row.routing_key for row in outbox(order_id)]


def deliver(row: OutboxMessage) -> None:
    """Hand one outbox row to every consumer bound to its key, through the consumers' own entry point, and
    mark it published, as a relay does. Fails the test if any consumer does not ack it."""
    properties, headers = row.wire_properties(), row.wire_headers()
    for consumer in bus.consumers_for(row.routing_key):
        verdict = handle_delivery(consumer, row.body(), properties, headers, row.routing_key)
        assert verdict.action == "ack", (consumer, row.routing_key, verdict.failure)
    OutboxMessage.objects.filter(pk=row.pk).update(published_at=timezone.now())


def deliver_all_except(*held_back: str) -> int:
    """Deliver unpublished rows in order until none is left but those of the `held_back` keys, which wait in
    a slow queue. Returns how many were delivered."""
    delivered = 0
    while True:
        row = (
            OutboxMessage.objects.filter(published_at__isnull=True)
            .exclude(routing_key__in=held_back)
            .order_by("created_at", "id")
            .first()
        )
        if row is None:
            return delivered
        deliver(row)
        delivered += 1


def drain() -> int:
    """Run the in-process transport until the outbox is empty; nothing may end in the dead letters."""
    delivered = inprocess.drain()
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    assert list(DeadLetter.objects.values_list("routing_key", "reason", "detail")) == []
    return delivered


def make_overdue(order_id: str) -> None:
    """Put the saga's deadline in the past: it entered its state longer ago than the settings allow."""
    saga = Saga.objects.get(order_id=order_id)
    assert saga.deadline_at is not None, f"a {saga.state} saga has no deadline"
    overdue_by = saga.deadline_at - saga.state_entered_at + timedelta(seconds=1)
    Saga.objects.filter(order_id=order_id).update(state_entered_at=timezone.now() - overdue_by)
    assert Saga.objects.get(order_id=order_id).deadline_at < timezone.now()


def order_of(order_id: str) -> Order:
    return Order.objects.get(id=order_id)


def saga_of(order_id: str) -> Saga:
    return Saga.objects.get(order_id=order_id)


def history(order_id: str) -> list[str]:
    return [step.to_state for step in saga_of(order_id).transitions.order_by("at", "id")]


def balance(customer_id: str) -> Decimal:
    return Account.objects.get(customer_id=customer_id).balance


def stock(sku: str) -> tuple[int, int, int]:
    product = Product.objects.get(sku=sku)
    return product.on_hand, product.reserved, product.available


def payments_of(order_id: str) -> list[tuple[str, Decimal]]:
    return list(Payment.objects.filter(order_id=order_id).values_list("status", "amount"))


def ledger_of(order_id: str) -> list[tuple[str, Decimal]]:
    return sorted(LedgerEntry.objects.filter(payment__order_id=order_id).values_list("kind", "amount"))


def assert_no_money_moved_in_net(customer_id: str) -> None:
    account = Account.objects.get(customer_id=customer_id)
    totals = ledger_totals(customer_id=customer_id)
    assert account.balance == account.opening_balance
    assert totals[LedgerEntry.Kind.CAPTURE] == totals[LedgerEntry.Kind.REFUND]
