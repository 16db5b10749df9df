"""API test helpers: post raw bodies, check the one error shape, and check that a refusal wrote nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from config.access.services import api_token_create
from inventory.models import Product, StockMovement
from messaging.models import OutboxMessage
from orders.models import Order, OrderLine
from payments.models import Account, LedgerEntry, Payment
from saga.models import Saga

WRITTEN = (Order, OrderLine, Saga, OutboxMessage, Product, StockMovement, Account, LedgerEntry, Payment)


def post_json(client: Client, path: str, body: Any, **headers: str):
    """POST `body` as JSON; a `str` or `bytes` body is sent as it is, so that tests can send broken JSON."""
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, raw, content_type="application/json", headers=headers)


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The answer is `status` with a JSON body of exactly {"code", "message", "details"}."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], (dict, list))
    if code is not None:
        assert body["code"] == code, body
    return body


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in WRITTEN}


@contextlib.contextmanager
def writes_nothing() -> Iterator[None]:
    before = _counts()
    yield
    assert _counts() == before


@pytest.fixture
def inprocess(settings):
    """The in-process transport, driven by the test through `drain()` rather than by its thread."""
    settings.MESSAGING_TRANSPORT = "inprocess"
    settings.MESSAGING_INPROCESS_AUTOSTART = False


@pytest.fixture
def token_for(db):
    """token_for("operator") or token_for("customer", "alice"): a new API token."""

    def issue(role: str, customer_id: str | None = None) -> str:
        return api_token_create(role=role, customer_id=customer_id, label="api tests", by="tests").token

    return issue


@pytest.fixture(autouse=True)
def operator_client(request):
    """Every API test that uses the test client speaks as an operator, unless it sets another
    HTTP_AUTHORIZATION (or deletes it) on `client.defaults` itself."""
    if "client" not in request.fixturenames or request.node.get_closest_marker("django_db") is None:
        return
    client = request.getfixturevalue("client")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {request.getfixturevalue('token_for')('operator')}"
