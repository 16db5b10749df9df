"""Idempotency-Key under real concurrency: requests in threads, each with its own PostgreSQL connection.

A replay answers with the first answer, byte for byte, and a duplicate that arrives while the first request
is still in flight gets that answer too, never a second order. The moments that matter are forced: the first
request is held right after its order is inserted (an execute wrapper on its connection) and right after its
transaction committed (the "order placed" line, logged after the commit), and the order moves on while it is
held, so that an answer read afresh would differ from the first one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections
from django.test import Client

from config.access.services import api_token_create
from orders.models import Order
from orders.services import order_finish
from saga.models import Saga
from tests.factories import make_account, make_product

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_S = 20
# The statement that inserts the order (with its lines, saga and messages: config.kernel.sql.batched) holds this.
ORDER_INSERT = "INSERT INTO orders_order ("


@pytest.fixture
def order_request() -> Callable[[], dict[str, Any]]:
    """A fresh order body, with an operator's Authorization header, for a new customer and product."""
    token = api_token_create(role="operator", by="tests").token

    def make() -> dict[str, Any]:
        body = {"customer_id": make_account().customer_id, "items": [{"sku": make_product().sku, "quantity": 1}]}
        return {"body": body, "token": token, "key": str(uuid.uuid4())}

    return make


def post(request: dict[str, Any]):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {request['token']}")
    return client.post(
        "/api/orders", request["body"], content_type="application/json", headers={"Idempotency-Key": request["key"]}
    )


class InThread(threading.Thread):
    """`post(request)` in a thread of its own (so on a connection of its own), optionally under an execute
    wrapper of that connection and after a barrier; keeps the answer, or what it raised."""

    def __init__(
        self, request: dict[str, Any], wrapper: Callable | None = None, barrier: threading.Barrier | None = None
    ):
        super().__init__(daemon=True)
        self.request, self.wrapper, self.barrier = request, wrapper, barrier
        self.answer: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.barrier is not None:
                self.barrier.wait(WAIT_S)
            if self.wrapper is None:
                self.answer = post(self.request)
            else:
                with connection.execute_wrapper(self.wrapper):
                    self.answer = post(self.request)
        except BaseException as error:  # noqa: BLE001 - reported by the test that joins
            self.error = error
        finally:
            connections.close_all()

    def result(self):
        self.join(WAIT_S)
        assert not self.is_alive(), "the request did not finish"
        assert self.error is None, repr(self.error)
        return self.answer


class HeldAfterCommit(logging.Handler):
    """Holds the thread that logs "order placed" (after its order's commit) until `let_go` is set."""

    def __init__(self, thread: threading.Thread):
        super().__init__(logging.INFO)
        self.thread, self.committed, self.let_go = thread, threading.Event(), threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread.ident and record.getMessage().startswith("order placed"):
            self.committed.set()
            self.let_go.wait(WAIT_S)


@pytest.fixture
def held_after_commit(caplog):
    """held_after_commit(thread): a HeldAfterCommit on the orders' logger, removed (and released) after."""
    caplog.set_level(logging.INFO, logger="orders.services")
    logger, handlers = logging.getLogger("orders.services"), []

    def hold(thread: threading.Thread) -> HeldAfterCommit:
        handler = HeldAfterCommit(thread)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield hold
    for handler in handlers:
        handler.let_go.set()
        logger.removeHandler(handler)


def held_after_the_order_insert() -> tuple[Callable, threading.Event, threading.Event]:
    """An execute wrapper that holds its thread right after the order's INSERT, uncommitted, until `go_on` is
    set; and the events `inserted` (it is held there) and `go_on`."""
    inserted, go_on = threading.Event(), threading.Event()

    def hold(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if ORDER_INSERT in sql:
            inserted.set()
            go_on.wait(WAIT_S)
        return result

    return hold, inserted, go_on


def move_on(request: dict[str, Any]) -> None:
    """The order's saga ends meanwhile: an answer read now differs from the first one."""
    order = Order.objects.get(customer_id=request["body"]["customer_id"], idempotency_key=request["key"])
    order_finish(order_id=str(order.id), status=Order.Status.FAILED, failure_reason="cancelled")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def waiting_on_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE %s",
            ["%" + ORDER_INSERT + "%"],
        )
        return cursor.fetchone()[0] > 0


def test_a_replay_between_the_first_requests_commit_and_its_answer_gets_the_first_answer_byte_for_byte(
    order_request, held_after_commit
):
    request = order_request()
    first = InThread(request)
    held = held_after_commit(first)

    # given: the first request committed its order and is held before it answers
    first.start()
    assert held.committed.wait(WAIT_S), "the first request did not commit"
    move_on(request)

    # when the same request comes again
    replay = post(request)
    held.let_go.set()
    answer = first.result()

    # then it answers with the first answer, not with the order as it is now
    assert (answer.status_code, replay.status_code) == (201, 201)
    assert replay.content == answer.content
    assert replay.json()["status"] == "PENDING"
    assert Order.objects.filter(idempotency_key=request["key"]).count() == 1


def test_a_duplicate_in_flight_waits_for_the_first_request_and_answers_with_its_answer(
    order_request, held_after_commit
):
    request = order_request()
    hold_after_the_order_insert, inserted, go_on = held_after_the_order_insert()
    conflicted, go_on_after_conflict = threading.Event(), threading.Event()

    def hold_after_the_conflict(execute, sql, params, many, context):
        try:
            return execute(sql, params, many, context)
        except IntegrityError:
            conflicted.set()
            go_on_after_conflict.wait(WAIT_S)
            raise

    first = InThread(request, hold_after_the_order_insert)
    held = held_after_commit(first)
    duplicate = InThread(request, hold_after_the_conflict)

    # given: the first request has inserted its order, uncommitted, and the duplicate waits on the key
    first.start()
    assert inserted.wait(WAIT_S), "the first request did not insert its order"
    duplicate.start()
    wait_until(waiting_on_a_lock, "the duplicate waits on the key's unique index")

    # when the first commits (and is held before it answers), and the order moves on
    go_on.set()
    assert held.committed.wait(WAIT_S), "the first request did not commit"
    assert conflicted.wait(WAIT_S), "the duplicate did not meet the first order's key"
    move_on(request)
    go_on_after_conflict.set()
    second = duplicate.result()
    held.let_go.set()
    answer = first.result()

    # then both answer the same, byte for byte, and there is one order and one saga
    assert (answer.status_code, second.status_code) == (201, 201)
    assert second.content == answer.content
    order = Order.objects.get(idempotency_key=request["key"])
    assert Saga.objects.filter(order_id=order.id).count() == 1


def test_a_duplicate_whose_first_request_stays_in_flight_too_long_answers_409_and_is_answered_once_it_ends(
    order_request, settings
):
    settings.ORDERS_IDEMPOTENCY_WAIT_S = 0.5
    request = order_request()
    hold_after_the_order_insert, inserted, go_on = held_after_the_order_insert()

    # given a first request that has inserted its order and does not commit
    first = InThread(request, hold_after_the_order_insert)
    first.start()
    assert inserted.wait(WAIT_S), "the first request did not insert its order"
    try:
        # when a duplicate arrives, it waits as long as the setting says, then is told to send it again
        started = time.monotonic()
        duplicate = post(request)
        waited = time.monotonic() - started
    finally:
        go_on.set()
    assert duplicate.status_code == 409, duplicate.content
    assert duplicate.json()["code"] == "idempotency_key_in_use"
    assert 0.5 <= waited < WAIT_S
    # and once the first has answered, the same request again gets its answer, byte for byte: one order
    answer = first.result()
    assert answer.status_code == 201
    again = post(request)
    assert (again.status_code, again.content) == (201, answer.content)
    assert Order.objects.filter(idempotency_key=request["key"]).count() == 1


def test_many_concurrent_requests_with_one_key_make_one_order_and_one_answer(order_request):
    request = order_request()
    start = threading.Barrier(8)

    threads = [InThread(request, barrier=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    answers = [thread.result() for thread in threads]

    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.content for answer in answers}) == 1
    assert Order.objects.filter(idempotency_key=request["key"]).count() == 1
