"""The invariant audit (DESIGN §4): reads the whole database and lists every violation with its ids."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from inventory.models import Product, Reservation, ReservationLine, StockMovement
from messaging import bus
from messaging.models import DeadLetter, InboxMessage, OutboxMessage
from orders.models import Order
from payments.models import Account, LedgerEntry, Payment
from saga.models import Saga
from saga.services import ended_holding, stuck_sagas, sweep_grace
from saga.transitions import FINAL_STATES, INVENTORY_RELEASE

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Violation:
    invariant: int
    subject: str
    problem: str

    def __str__(self) -> str:
        return f"[invariant {self.invariant}] {self.subject}: {self.problem}"


def audit(*, settled: bool = False, now: datetime | None = None, since: datetime | None = None) -> list[Violation]:
    """Check every invariant. With `settled`, the system is taken to be quiet: nothing may be in flight.

    With `since`, the checks of single orders and messages (1, 2, 3, the orders of 5, and 6) cover those
    placed or sent since then: on a database of millions of orders, the whole of it would not fit in memory.
    Money and stock conservation (4, 5) always cover every account and product: they are sums in the database.
    """
    now = now or timezone.now()
    orders = Order.objects.all() if since is None else Order.objects.filter(created_at__gte=since)
    net = _captured_minus_refunded(orders)
    releases = _stock_still_held(settled, now)
    committed = _reserved_lines(Reservation.Status.COMMITTED, orders)  # the goods each order took
    return [
        *_orders_reach_an_end(settled, now, orders),
        *_completed_orders_paid_and_committed(orders, net, committed, releases),
        *_failed_orders_hold_nothing(orders, net, committed, releases),
        *_money_is_conserved(),
        *_stock_is_conserved(orders, committed),
        *_no_message_lost(settled, now, since),
    ]


def _of(orders, rows, order_field: str):
    """`rows` of the audited orders only, when the audit covers a window; all of them otherwise (a row of an
    order that does not exist is then checked too)."""
    return rows.filter(**{f"{order_field}__in": orders.values("id")}) if orders.query.where else rows


def _orders_reach_an_end(settled: bool, now: datetime, orders):
    pending = orders.filter(status=Order.Status.PENDING)
    if settled:
        for order_id in pending.values_list("id", flat=True):
            yield Violation(1, f"order {order_id}", "still PENDING while the system is quiet")
        return
    # Past the deadline by more than one sweep interval (the time the sweep has to act), or flagged.
    stuck = stuck_sagas(now=now, grace=sweep_grace()).exclude(state__in=FINAL_STATES)
    for saga in stuck.filter(order_id__in=pending.values("id")).order_by("state_entered_at"):
        yield Violation(1, f"order {saga.order_id}", f"PENDING, its saga {_why_stuck(saga)}")
    for order_id in pending.exclude(id__in=Saga.objects.values("order_id")).values_list("id", flat=True):
        yield Violation(1, f"order {order_id}", "has no saga")


def _why_stuck(saga: Saga) -> str:
    if saga.compensation_flagged:
        return (
            f"in {saga.state} has sent payment.refund {saga.compensation_attempts} times without an answer "
            f"(flagged; the sweep sends it again every {settings.SAGA_COMPENSATION_BACKOFF_MAX_S:g}s)"
        )
    deadline = saga.deadline_at
    assert deadline is not None, "a stuck saga that has not ended is one past its deadline"
    return f"in {saga.state} past its deadline {deadline.isoformat()}"


@dataclass(frozen=True)
class _HeldAfterTheEnd:
    """The failed orders whose stock is still taken: how often the saga asked its release, and
    those that may still be on their way (not settled only: ended moments ago, their answer not yet due)."""

    attempts: dict[str, int]
    on_their_way: frozenset[str]

    def note(self, order_id: str) -> str:
        asked = self.attempts.get(order_id)
        return "" if asked is None else f" (the saga asked its release {asked} times)"


def _stock_still_held(settled: bool, now: datetime) -> _HeldAfterTheEnd:
    held = ended_holding(INVENTORY_RELEASE)
    attempts = {str(order_id): n for order_id, n in held.values_list("order_id", "compensation_attempts")}
    if settled:
        return _HeldAfterTheEnd(attempts, frozenset())
    stuck = {
        str(order_id)
        for order_id in stuck_sagas(now=now, grace=sweep_grace())
        .filter(state__in=FINAL_STATES)
        .values_list("order_id", flat=True)
    }
    return _HeldAfterTheEnd(attempts, frozenset(attempts.keys() - stuck))


def _captured_minus_refunded(orders) -> dict[str, Decimal]:
    net: dict[str, Decimal] = defaultdict(lambda: ZERO)
    entries = _of(orders, LedgerEntry.objects.filter(payment__isnull=False), "payment__order_id")
    for order_id, kind, amount in entries.values_list("payment__order_id", "kind", "amount"):
        net[str(order_id)] += amount if kind == LedgerEntry.Kind.CAPTURE else -amount
    return net


def _reserved_lines(status: str, orders) -> dict[str, dict[str, int]]:
    lines: dict[str, dict[str, int]] = defaultdict(dict)
    held = _of(orders, ReservationLine.objects.filter(reservation__status=status), "reservation__order_id")
    for order_id, sku, quantity in held.values_list("reservation__order_id", "product_id", "quantity"):
        lines[str(order_id)][sku] = lines[str(order_id)].get(sku, 0) + quantity
    return lines


def _completed_orders_paid_and_committed(
    orders, net: dict[str, Decimal], committed: dict[str, dict[str, int]], releases: _HeldAfterTheEnd
):
    captured = defaultdict(list)
    payments = _of(orders, Payment.objects.filter(status=Payment.Status.CAPTURED), "order_id")
    for order_id, amount in payments.values_list("order_id", "amount"):
        captured[str(order_id)].append(amount)
    for order in orders.filter(status=Order.Status.COMPLETED).prefetch_related("lines"):
        key = str(order.id)
        if captured[key] != [order.total] or net[key] != order.total:
            yield Violation(2, f"order {key}", f"total {order.total} but captured {captured[key]}, net {net[key]}")
        wanted = {line.sku: line.quantity for line in order.lines.all()}
        if committed.get(key, {}) != wanted and key not in releases.on_their_way:
            yield Violation(
                2, f"order {key}", f"lines {wanted} but committed {committed.get(key, {})}{releases.note(key)}"
            )


def _failed_orders_hold_nothing(
    orders, net: dict[str, Decimal], committed: dict[str, dict[str, int]], releases: _HeldAfterTheEnd
):
    active = committed | _reserved_lines(Reservation.Status.ACTIVE, orders)
    for order_id in orders.filter(status__in=[Order.Status.FAILED, Order.Status.CANCELLED]).values_list(
        "id", flat=True
    ):
        key = str(order_id)
        if net.get(key, ZERO) != ZERO:
            yield Violation(3, f"order {key}", f"ended without success but {net[key]} is still captured")
        if key in active and key not in releases.on_their_way:
            yield Violation(3, f"order {key}", f"ended without success but holds {active[key]}{releases.note(key)}")


def _money_is_conserved():
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for customer_id, kind, total in (
        LedgerEntry.objects.values_list("account_id", "kind")
        .annotate(total=Sum("amount"))
        .values_list("account_id", "kind", "total")
    ):
        sums[customer_id][kind] = total
    for account in Account.objects.all():
        s = sums[account.customer_id]
        left = account.opening_balance + s[LedgerEntry.Kind.DEPOSIT]
        right = account.balance + s[LedgerEntry.Kind.CAPTURE] - s[LedgerEntry.Kind.REFUND]
        if left != right:
            yield Violation(
                4, f"account {account.customer_id}", f"opening+deposits {left} != balance+captured-refunded {right}"
            )


def _stock_is_conserved(orders, committed: dict[str, dict[str, int]]):
    moved: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for sku, kind, total in (
        StockMovement.objects.values_list("product_id", "kind")
        .annotate(total=Sum("quantity"))
        .values_list("product_id", "kind", "total")
    ):
        moved[sku][kind] = total
    active: dict[str, int] = defaultdict(int)
    for sku, total in (
        ReservationLine.objects.filter(reservation__status=Reservation.Status.ACTIVE)
        .values_list("product_id")
        .annotate(total=Sum("quantity"))
        .values_list("product_id", "total")
    ):
        active[sku] = total
    # Goods leave on_hand when they are reserved and come back when the order fails: what the movements say
    # an order took is what its reservation holds.
    taken: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kinds = [StockMovement.Kind.COMMIT, StockMovement.Kind.RETURN]
    movements = _of(orders, StockMovement.objects.filter(kind__in=kinds), "order_id")
    for order_id, sku, kind, quantity in movements.values_list("order_id", "product_id", "kind", "quantity"):
        taken[str(order_id)][sku] += quantity if kind == StockMovement.Kind.COMMIT else -quantity
    for order_id in sorted(taken.keys() | committed.keys()):
        moved_out = {sku: n for sku, n in taken[order_id].items() if n}
        if moved_out != committed.get(order_id, {}):
            yield Violation(
                5,
                f"order {order_id}",
                f"took {moved_out} from on_hand but its reservation holds {committed.get(order_id, {})}",
            )
    for product in Product.objects.all():
        m = moved[product.sku]
        came_in = m[StockMovement.Kind.INITIAL] + m[StockMovement.Kind.RESTOCK]
        went_out = m[StockMovement.Kind.COMMIT] - m[StockMovement.Kind.RETURN]
        if came_in != product.on_hand + went_out:
            yield Violation(
                5,
                f"product {product.sku}",
                f"initial+restocks {came_in} != on_hand {product.on_hand} + taken {went_out}",
            )
        if product.reserved != active[product.sku]:
            yield Violation(
                5, f"product {product.sku}", f"reserved {product.reserved} != active reservations {active[product.sku]}"
            )
        if product.on_hand < product.reserved:
            yield Violation(5, f"product {product.sku}", f"available {product.available} is negative")


def _no_message_lost(settled: bool, now: datetime, since: datetime | None):
    lag = timedelta(seconds=max(settings.OUTBOX_SWEEP_INTERVAL_S * 10, 30))
    unpublished = OutboxMessage.objects.filter(published_at__isnull=True)
    if not settled:
        unpublished = unpublished.filter(created_at__lt=now - lag)
    for message_id, routing_key in unpublished.values_list("message_id", "routing_key"):
        yield Violation(6, f"message {message_id}", f"{routing_key} was never published")
    if not settled:
        return
    # Every published message reached each of its consumers, or is a dead letter there. Older ones: their
    # inbox rows may be pruned already.
    start = now - timedelta(days=settings.INBOX_RETENTION_DAYS)
    if since is not None:
        start = max(start, since)
    # An hour's slack: the consumer's clock may run behind the producer's.
    seen = set(
        InboxMessage.objects.filter(processed_at__gte=start - timedelta(hours=1)).values_list("consumer", "message_id")
    )
    dead = set(DeadLetter.objects.values_list("queue", "message_id"))
    published = OutboxMessage.objects.filter(published_at__isnull=False, created_at__gte=start)
    for message_id, routing_key, target in published.values_list("message_id", "routing_key", "target_queue"):
        for consumer in [target] if target else bus.consumers_for(routing_key):
            if (consumer, str(message_id)) not in seen and (consumer, str(message_id)) not in dead:
                yield Violation(6, f"message {message_id}", f"{routing_key} never processed by {consumer}")
