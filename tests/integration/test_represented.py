"""The API's output serializers, built once per class and thread, give what a new serializer gives, also to
several threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from config.kernel.api import represented
from orders.api import OrderDetailOutputSerializer, OrderOutputSerializer
from orders.selectors import order_get, order_list
from tests.factories import make_account, make_product
from tests.integration.support import drain, place

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reused_serializer_answers_as_a_new_one_for_each_order_and_each_list(inprocess):
    product = make_product(stock=100, price="2.50")
    orders = [place(make_account(balance="100.00").customer_id, (product.sku, n)) for n in (1, 2, 3)]
    drain()
    short = make_account(balance="1.00")
    orders.append(place(short.customer_id, (product.sku, 4)))  # declined: another status and reason
    drain()

    for order_id in orders:
        order = order_get(order_id=order_id)
        assert represented(OrderDetailOutputSerializer, order) == OrderDetailOutputSerializer(order).data
    page = list(order_list())
    assert represented(OrderOutputSerializer, page, many=True) == OrderOutputSerializer(page, many=True).data
    assert {o["status"] for o in represented(OrderOutputSerializer, page, many=True)} == {"COMPLETED", "FAILED"}


def test_threads_representing_different_orders_at_once_each_get_their_own(inprocess):
    product = make_product(stock=100, price="1.00")
    orders = [
        order_get(order_id=place(make_account(balance="100.00").customer_id, (product.sku, n))) for n in range(1, 9)
    ]
    expected = {str(order.id): OrderDetailOutputSerializer(order).data for order in orders}

    def represent_many(order):
        try:
            return [represented(OrderDetailOutputSerializer, order) for _ in range(50)]
        finally:
            connections.close_all()  # this thread's own: the saga's history is read for each answer

    with ThreadPoolExecutor(max_workers=8) as pool:
        for order, answers in zip(orders, pool.map(represent_many, orders), strict=True):
            assert all(answer == expected[str(order.id)] for answer in answers)
