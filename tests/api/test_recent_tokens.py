"""The tokens a web process keeps (config/access/recent_tokens.py): a status read is one statement once its
token is known, and a token revoked, changed or deleted anywhere is refused at the database's notice of it; a
process whose listener cannot hear looks every token up."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.access.recent_tokens import listener, recent_tokens
from config.access.services import token_hash
from tests.api.conftest import assert_error
from tests.factories import make_account, make_product
from tests.integration.support import drain, elsewhere, kept_while_heard, place
from tests.processes import manage, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kept(settings):
    """Tokens kept as the product keeps them, with a listener that hears the database."""
    with kept_while_heard(listener, settings, "API_TOKEN_CACHE_S"):
        yield


@pytest.fixture
def bearer(client, token_for):
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    token = token_for("operator")
    return {"Authorization": f"Bearer {token}"}, token


def statements(client, path: str, headers: dict) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as made:
        status = client.get(path, headers=headers).status_code
    return status, [q["sql"] for q in made]


def refused_soon(client, headers: dict) -> None:
    wait_for(
        lambda: client.get("/api/products", headers=headers).status_code == 401,
        timeout=TRUSTED_WITHIN,
        interval=0.05,
        message="the token to be refused",
    )


TRUSTED_WITHIN = 2.0  # a notice arrives in milliseconds; this is the bound of a loaded machine


def test_a_status_read_is_one_statement_once_its_token_is_kept(client, inprocess, kept, bearer):
    headers, _ = bearer
    sku = make_product(stock=5).sku
    order_id = place(make_account(balance="100.00").customer_id, (sku, 1))
    drain()
    first = statements(client, f"/api/orders/{order_id}", headers)

    status, read = statements(client, f"/api/orders/{order_id}", headers)

    assert first[0] == status == 200
    assert len(first[1]) == 3, first[1]  # the token, its last_used_at, the order
    assert len(read) == 1, read  # the order, its lines and its saga's timeline


def test_a_token_revoked_by_another_process_is_refused_at_the_notice(client, kept, bearer):
    headers, token = bearer
    assert statements(client, "/api/products", headers)[0] == 200
    assert not any("config_apitoken" in sql for sql in statements(client, "/api/products", headers)[1])

    manage("revoke_api_token", token, "--by", "tests")

    refused_soon(client, headers)
    assert_error(client.get("/api/products", headers=headers), 401, "authentication_failed")


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE config_apitoken SET revoked_at = now() WHERE key_hash = %s",
        "UPDATE config_apitoken SET role = 'customer', customer_id = 'someone' WHERE key_hash = %s",
        "DELETE FROM config_apitoken WHERE key_hash = %s",
    ],
    ids=["revoked", "made a customer's", "deleted"],
)
def test_a_token_changed_by_sql_elsewhere_is_forgotten_at_the_notice(client, kept, bearer, change):
    headers, token = bearer
    assert client.get("/api/orders", headers=headers).status_code == 200
    assert recent_tokens.get(token_hash(token)) is not None

    elsewhere(change, token_hash(token))

    wait_for(lambda: recent_tokens.get(token_hash(token)) is None, timeout=TRUSTED_WITHIN, message="the notice")
    answer = client.get("/api/orders", headers=headers)
    assert answer.status_code == 401 or answer.json()["count"] == 0  # a customer's token sees none of these


def test_while_the_listener_cannot_hear_every_request_looks_its_token_up_and_then_keeps_it_again(client, kept, bearer):
    headers, token = bearer
    assert statements(client, "/api/products", headers)[0] == 200
    cut = listener.backend_pid

    elsewhere("SELECT pg_terminate_backend(%s)", cut)
    wait_for(lambda: not recent_tokens.trusted(), timeout=TRUSTED_WITHIN, message="the listener to notice the cut")
    looked_up = [statements(client, "/api/products", headers)[1] for _ in range(3)]
    # A revocation while it does not listen: no notice reaches it, and it must not trust what it kept before.
    elsewhere("UPDATE config_apitoken SET revoked_at = now() WHERE key_hash = %s", token_hash(token))

    assert all(any("config_apitoken" in sql for sql in made) for made in looked_up), looked_up
    wait_for(recent_tokens.trusted, timeout=15, message="the listener to hear again")
    assert listener.backend_pid not in (None, cut)
    assert_error(client.get("/api/products", headers=headers), 401, "authentication_failed")
