"""The admin as the ops console: staff only, read-only, an order's saga timeline, the filters that find what
is stuck, and a cancel that goes through the saga's service."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.test import Client
from django.utils import timezone

from config.access.models import AuditEntry
from messaging.models import DeadLetter, InboxMessage, OutboxMessage
from messaging.outbox import publish
from saga.models import Saga
from saga.timeline import DEAD_LETTER, HANDLED, SENT, TRANSITION, saga_timeline
from tests.factories import make_account, make_product
from tests.integration.support import drain, make_overdue, outbox, place, saga_of

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_superuser(f"ops-{uuid.uuid4().hex[:6]}", password="x" * 12)
    client = Client()
    client.force_login(user)
    return client


def completed_order() -> str:
    order_id = place(make_account(balance="100.00").customer_id, (make_product(stock=5, price="10.00").sku, 2))
    drain()
    return order_id


def test_the_admin_is_for_staff_only():
    order_id = str(uuid.uuid4())
    anonymous = Client()
    assert anonymous.get(f"/admin/orders/order/{order_id}/change/").status_code == 302
    customer = User.objects.create_user("not-staff", password="x" * 12)
    client = Client()
    client.force_login(customer)
    assert client.get("/admin/orders/order/").status_code == 302


def test_the_timeline_merges_transitions_and_messages_in_and_out_in_time_order(inprocess):
    order_id = completed_order()

    entries = saga_timeline(order_id=order_id)

    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert [e.what for e in entries if e.kind == TRANSITION] == [
        "∅ → PAYMENT_PENDING",
        "PAYMENT_PENDING → INVENTORY_PENDING",
        "INVENTORY_PENDING → COMPLETED",
    ]
    sent = {e.message_id: e.message_type for e in entries if e.kind == SENT}
    assert sent == {str(row.message_id): row.routing_key for row in outbox(order_id)}
    handled = {(e.message_id, e.what) for e in entries if e.kind == HANDLED}
    assert handled == {
        (row.message_id, f"by {row.consumer}") for row in InboxMessage.objects.filter(message_id__in=sent)
    }
    assert ("by saga" in {what for _, what in handled}) and ("by payments" in {what for _, what in handled})


def test_a_dead_letter_of_the_orders_message_is_on_its_timeline(inprocess):
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    row = outbox(order_id, "payment.process")[0]
    now = timezone.now()
    DeadLetter.objects.create(
        message_id=str(row.message_id),
        routing_key=row.routing_key,
        queue="payments",
        body="{}",
        reason="handler_error",
        detail="boom",
        first_failed_at=now,
        last_failed_at=now,
    )

    (dead,) = [e for e in saga_timeline(order_id=order_id) if e.kind == DEAD_LETTER]

    assert (dead.message_id, dead.what, dead.detail) == (str(row.message_id), "payments: handler_error", "boom")


def test_an_orders_page_shows_its_lines_payment_reservation_and_saga_timeline(inprocess, staff):
    order_id = completed_order()

    page = staff.get(f"/admin/orders/order/{order_id}/change/").content.decode()

    assert "CAPTURED" in page and "20.00 EUR" in page  # the payment
    assert "COMMITTED" in page or "ACTIVE" in page  # the reservation
    timeline = re.search(r'<table class="saga-timeline">.*?</table>', page, re.S).group(0)
    for row in outbox(order_id):
        assert str(row.message_id) in timeline
    assert timeline.count('class="timeline-transition"') == 3
    assert "INVENTORY_PENDING → COMPLETED" in timeline
    assert 'name="_save"' not in page  # read-only: nothing to save


def test_an_order_cannot_be_edited_through_the_admin(inprocess, staff):
    order_id = completed_order()

    response = staff.post(f"/admin/orders/order/{order_id}/change/", {"status": "PENDING"})

    assert response.status_code == 403
    assert Saga.objects.get(order_id=order_id).state == "COMPLETED"


def test_the_cancel_action_goes_through_the_saga_and_refuses_a_final_order(inprocess, staff):
    final = completed_order()
    pending = place(make_account().customer_id, (make_product().sku, 1))

    response = staff.post(
        "/admin/orders/order/", {"action": "cancel", "_selected_action": [pending, final]}, follow=True
    )

    assert response.status_code == 200
    assert saga_of(pending).state == "COMPENSATING"
    assert saga_of(pending).transitions.filter(message_type="saga.cancel").exists()
    (audit,) = AuditEntry.objects.filter(action="order.cancel", target=f"order:{pending}")
    assert audit.actor.startswith("ops-")  # the admin user who asked
    assert saga_of(final).state == "COMPLETED"
    assert "can no longer be cancelled" in response.content.decode()


def test_staff_without_the_change_permission_cannot_cancel(inprocess):
    user = User.objects.create_user("viewer", password="x" * 12, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_order"))
    client = Client()
    client.force_login(user)
    pending = place(make_account().customer_id, (make_product().sku, 1))

    page = client.get("/admin/orders/order/").content.decode()
    client.post("/admin/orders/order/", {"action": "cancel", "_selected_action": [pending]})

    assert 'value="cancel"' not in page
    assert saga_of(pending).state == "PAYMENT_PENDING"


def changelist_ids(client: Client, query: str) -> set[str]:
    page = client.get(f"/admin/saga/saga/?{query}").content.decode()
    return set(re.findall(r"/admin/orders/order/([0-9a-f-]{36})/change/", page))


def test_sagas_filter_by_state_by_time_in_state_and_stuck(inprocess, staff):
    old_but_done = completed_order()
    Saga.objects.filter(order_id=old_but_done).update(state_entered_at=timezone.now() - timedelta(hours=2))
    account, product = make_account(balance="1000.00"), make_product(stock=50)
    fresh = place(account.customer_id, (product.sku, 1))
    stuck = place(account.customer_id, (product.sku, 1))
    make_overdue(stuck)

    assert {stuck} == changelist_ids(staff, "stuck=yes") & {fresh, stuck, old_but_done}
    assert {fresh, old_but_done} <= changelist_ids(staff, "stuck=no")
    assert {fresh, stuck} == changelist_ids(staff, "state__exact=PAYMENT_PENDING") & {fresh, stuck, old_but_done}
    assert {old_but_done} == changelist_ids(staff, "in_state=gt1h") & {fresh, stuck, old_but_done}
    assert fresh in changelist_ids(staff, "in_state=lt1m")


def test_a_sagas_page_shows_its_timeline_and_cannot_be_saved(inprocess, staff):
    order_id = completed_order()

    page = staff.get(f"/admin/saga/saga/{order_id}/change/").content.decode()

    assert 'class="saga-timeline"' in page and "PAYMENT_PENDING → INVENTORY_PENDING" in page
    assert 'name="_save"' not in page


def test_the_outbox_filters_pending_from_published_and_shows_the_lag(inprocess, staff):
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    published, waiting = outbox(order_id)
    OutboxMessage.objects.filter(pk=published.pk).update(published_at=published.created_at + timedelta(milliseconds=42))

    pending_page = staff.get("/admin/messaging/outboxmessage/?status=pending").content.decode()
    published_page = staff.get("/admin/messaging/outboxmessage/?status=published").content.decode()

    assert str(waiting.message_id) in pending_page and str(published.message_id) not in pending_page
    assert str(published.message_id) in published_page and str(waiting.message_id) not in published_page
    assert "42 ms" in published_page and "pending " in pending_page


def test_dead_letters_keep_their_replay_and_discard_actions(staff):
    now = timezone.now()
    DeadLetter.objects.create(
        message_id=str(uuid.uuid4()),
        routing_key="payment.process",
        queue="payments",
        body="{}",
        reason="invalid_payload",
        first_failed_at=now,
        last_failed_at=now,
    )

    page = staff.get("/admin/messaging/deadletter/").content.decode()

    assert 'value="replay"' in page and 'value="discard"' in page


def test_payments_and_reservations_lead_back_to_their_order(inprocess, staff):
    order_id = completed_order()
    link = f"/admin/orders/order/{order_id}/change/"

    assert link in staff.get("/admin/payments/payment/").content.decode()
    assert link in staff.get("/admin/inventory/reservation/").content.decode()


def test_staff_who_may_only_view_dead_letters_cannot_replay_or_discard_them():
    user = User.objects.create_user("dl-viewer", password="x" * 12, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    client = Client()
    client.force_login(user)
    now = timezone.now()
    letter = DeadLetter.objects.create(
        message_id=str(uuid.uuid4()),
        routing_key="payment.process",
        queue="payments",
        body="{}",
        reason="invalid_payload",
        first_failed_at=now,
        last_failed_at=now,
    )

    page = client.get("/admin/messaging/deadletter/").content.decode()
    client.post("/admin/messaging/deadletter/", {"action": "discard", "_selected_action": [letter.pk]})

    assert 'value="replay"' not in page and 'value="discard"' not in page
    letter.refresh_from_db()
    assert letter.discarded_at is None


def test_the_lists_of_tables_that_grow_with_every_order_are_counted_from_the_estimate_when_unfiltered(
    staff, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from config.kernel.admin_mixins import EstimatedCountPaginator

    with transaction.atomic():
        sent = [publish("order.completed", {"order_id": str(uuid.uuid4())}) for _ in range(3)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_outboxmessage")
    with transaction.atomic():
        newest = publish("order.completed", {"order_id": str(uuid.uuid4())})  # not in the estimate yet
    monkeypatch.setattr(EstimatedCountPaginator, "ESTIMATE_ABOVE", 2)

    with CaptureQueriesContext(connection) as queries:
        page = staff.get("/admin/messaging/outboxmessage/").content.decode()
    filtered = staff.get("/admin/messaging/outboxmessage/?status=pending").content.decode()

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts == [], counts  # no count(*) of the whole table, not even a second one for "show all"
    assert "3 outbox messages" in page  # the estimate, which has not seen the newest row
    assert "4 outbox messages" in filtered  # a filtered list is counted exactly
    ids = [str(row.message_id) for row in [newest, *reversed(sent)]]
    assert sorted(ids, key=page.index) == ids  # newest first


def test_the_indexes_of_the_admins_newest_first_lists_are_built_and_valid():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.relname, i.indisvalid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) "
            "WHERE t.relname IN ('saga_saga', 'payments_payment') AND a.attname = 'created_at' "
            "AND i.indnatts = 1"
        )
        assert sorted(cursor.fetchall()) == [("payments_payment", True), ("saga_saga", True)]
