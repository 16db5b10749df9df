"""The webhook signature: HMAC-SHA256 over "<timestamp>.<body>", as docs/operations.md tells receivers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from pathlib import Path

from orders.webhooks import SIGNATURE_TOLERANCE_S, event_id_of, sign, signature_header, verify

SECRET = "whsec-0123456789abcdef"
BODY = b'{"id":"e","type":"order.completed"}'


def test_the_signature_is_the_hex_hmac_sha256_of_the_timestamp_a_dot_and_the_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()

    assert sign(SECRET, 1700000000, BODY) == expected
    assert signature_header(SECRET, 1700000000, BODY) == f"t=1700000000,v1={expected}"


def test_a_signature_verifies_under_its_secret_and_its_body_only():
    now = time.time()
    header = signature_header(SECRET, int(now), BODY)

    assert verify(SECRET, header, BODY, now=now)
    assert not verify("another-secret-of-16", header, BODY, now=now)
    assert not verify(SECRET, header, BODY + b" ", now=now)
    assert not verify(SECRET, header.replace("t=", "t=1"), BODY, now=now)  # another timestamp


def test_an_old_or_future_signature_is_refused_beyond_the_tolerance():
    signed_at = 1700000000
    header = signature_header(SECRET, signed_at, BODY)

    assert verify(SECRET, header, BODY, now=signed_at + SIGNATURE_TOLERANCE_S)
    assert not verify(SECRET, header, BODY, now=signed_at + SIGNATURE_TOLERANCE_S + 1)
    assert not verify(SECRET, header, BODY, now=signed_at - SIGNATURE_TOLERANCE_S - 1)


def test_a_header_that_is_not_a_signature_is_refused_without_raising():
    for header in ["", "garbage", "t=,v1=", "t=abc,v1=00", "v1=" + sign(SECRET, 0, BODY), "t=1700000000"]:
        assert not verify(SECRET, header, BODY, now=1700000000)


def test_a_header_with_several_v1_signatures_verifies_when_any_of_them_matches():
    header = f"t=1700000000,v1={sign('the-old-secret-16', 1700000000, BODY)},v1={sign(SECRET, 1700000000, BODY)}"

    assert verify(SECRET, header, BODY, now=1700000000)


def test_an_event_id_is_the_same_for_the_same_order_and_event_and_differs_otherwise():
    order = "6f1c2d1e-8a7b-4c3d-9e0f-112233445566"

    assert event_id_of(order, "order.completed") == event_id_of(order, "order.completed")
    assert event_id_of(order, "order.completed") != event_id_of(order, "order.failed")
    assert event_id_of(order, "order.completed") != event_id_of(
        "6f1c2d1e-8a7b-4c3d-9e0f-112233445567", "order.completed"
    )


def test_the_receivers_snippet_in_the_operations_guide_verifies_what_the_product_signs():
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    snippet = re.search(r"## Webhooks.*?```python\n(.*?)```", text, re.DOTALL)
    assert snippet, "docs/operations.md has no Python snippet in its Webhooks section"
    namespace: dict = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the docs' own code, run as a receiver would
    body = json.dumps({"id": "e", "type": "order.failed"}).encode()
    now = int(time.time())
    headers = {"Sagaflow-Signature": signature_header(SECRET, now, body)}

    assert namespace["verify_sagaflow_signature"](SECRET, headers["Sagaflow-Signature"], body)
    assert not namespace["verify_sagaflow_signature"](SECRET, headers["Sagaflow-Signature"], body + b"x")
    stale = signature_header(SECRET, now - 3600, body)
    assert not namespace["verify_sagaflow_signature"](SECRET, stale, body)
