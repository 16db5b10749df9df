"""The message contracts served beside /api/schema: the messages page, the JSON Schema catalogue and the AsyncAPI
document, public, with the product's security headers, in the production and the embedded setting alike."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from config.contracts import ASYNCAPI_JSON, ASYNCAPI_YAML, JSON_SCHEMA
from messaging import bus, contracts
from messaging.catalogue import CATALOGUE, field_schema
from saga import diagram
from tests.api.conftest import assert_error
from tests.processes import ROOT

pytestmark = pytest.mark.django_db

PAGES = {
    "/api/messages": "text/html",
    "/api/messages/schema": JSON_SCHEMA,
    "/api/asyncapi": ASYNCAPI_YAML,
    "/api/asyncapi?format=json": ASYNCAPI_JSON,
}
SECURITY_HEADERS = ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy")


@pytest.fixture
def anonymous(client):
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    return client


@pytest.mark.parametrize(("path", "content_type"), PAGES.items())
def test_each_contract_answers_without_a_token_or_with_a_stale_one(anonymous, path, content_type):
    for headers in ({}, {"Authorization": "Bearer sf_revoked-or-never-issued"}):
        response = anonymous.get(path, headers=headers)

        assert response.status_code == 200, (path, response.content[:300])
        assert response["Content-Type"] == f"{content_type}; charset=utf-8"
        assert "WWW-Authenticate" not in response


@pytest.mark.parametrize("path", PAGES)
def test_each_contract_carries_the_security_headers_of_the_product(anonymous, path):
    usual = anonymous.get("/api/products", HTTP_AUTHORIZATION=anonymous.defaults.get("HTTP_AUTHORIZATION", ""))

    response = anonymous.get(path)

    assert {h: response.get(h) for h in SECURITY_HEADERS} == {h: usual.get(h) for h in SECURITY_HEADERS}
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_the_json_schema_catalogue_is_the_generated_one(anonymous):
    assert anonymous.get("/api/messages/schema").json() == contracts.catalogue_schema()


def test_the_asyncapi_document_is_yaml_by_default_and_json_on_request(anonymous):
    as_yaml = yaml.safe_load(anonymous.get("/api/asyncapi").content)
    by_format = json.loads(anonymous.get("/api/asyncapi?format=json").content)
    by_accept = anonymous.get("/api/asyncapi", HTTP_ACCEPT="application/json")

    assert as_yaml == by_format == contracts.asyncapi()
    assert by_accept["Content-Type"].startswith(ASYNCAPI_JSON)
    assert json.loads(by_accept.content) == by_format


def test_an_unknown_format_is_a_json_400(anonymous):
    body = assert_error(anonymous.get("/api/asyncapi?format=xml"), 400, "invalid_format")

    assert body["details"] == {"format": "xml"}


@pytest.mark.parametrize("path", ["/api/messages", "/api/messages/schema", "/api/asyncapi"])
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_a_write_to_a_contract_is_a_json_405_not_the_csrf_page(path, method, settings):
    from django.test import Client

    csrf_checking = Client(enforce_csrf_checks=True)

    assert_error(getattr(csrf_checking, method)(path), 405, "method_not_allowed")


def test_the_page_lists_every_message_with_its_kind_producer_consumers_and_fields(anonymous):
    page = anonymous.get("/api/messages").content.decode()

    for key, message in CATALOGUE.items():
        row = re.search(rf'<tr id="{re.escape(key)}">(.*?)</tr>', page, re.DOTALL)
        assert row, key
        raw = re.findall(r"<td>(.*?)</td>", row.group(1), re.DOTALL)
        cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for cell in raw]
        assert cells[:4] == [
            key,
            message.kind,
            message.producer,
            ", ".join(bus.consumers_for(key)) or "(no consumer here)",
        ]
        fields = re.findall(r"<li><code>(.*?)</code> (.*?)</li>", raw[4])
        assert fields == [(name, field_schema(check)["title"]) for name, check in message.fields.items()]


def test_the_page_shows_the_saga_diagram_and_the_queues(anonymous, settings):
    page = anonymous.get("/api/messages").content.decode()

    source = re.search(r'<pre class="mermaid" id="saga-diagram">(.*?)</pre>', page, re.DOTALL)
    assert source and html.unescape(source.group(1)) == diagram.mermaid()
    for consumer in bus.consumers():
        assert f"<code>{consumer}</code>" in page
    assert f"x-delivery-limit={settings.MESSAGING_DELIVERY_LIMIT}" in page
    assert "sagaflow.dead-letters" in page


def test_the_page_uses_only_local_assets_the_mermaid_script_among_them(anonymous):
    page = anonymous.get("/api/messages").content.decode()

    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", page, re.IGNORECASE), "a remote asset"
    scripts = re.findall(r"""<script src=["']([^"']+)["']""", page)
    styles = re.findall(r"""<link rel="stylesheet" href=["']([^"']+)["']""", page)
    assert any(s.endswith("/mermaid.min.js") for s in scripts) and styles
    for asset in scripts + styles:
        assert asset.startswith("/static/"), asset
        response = anonymous.get(asset)
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_the_contracts_answer_in_the_embedded_mode_too(tmp_path):
    # SQLite, no broker, DEBUG off: what `make run` starts. Asked in a process of its own, so that its settings
    # are read from that environment.
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BROKER_URL", "SECRET_KEY"}}
    env.update(
        {
            "SQLITE_PATH": str(tmp_path / "embedded.sqlite3"),
            "MESSAGING_INPROCESS_AUTOSTART": "false",
            "ALLOWED_HOSTS": "testserver",
            "DEBUG": "false",
        }
    )
    script = (
        "from django.test import Client\n"
        "from django.conf import settings\n"
        "assert settings.MESSAGING_TRANSPORT == 'inprocess' and 'sqlite' in settings.DATABASES['default']['ENGINE']\n"
        "client = Client()\n"
        f"for path in {list(PAGES)!r} + ['/static/config/vendor/mermaid/mermaid.min.js']:\n"
        "    response = client.get(path)\n"
        "    print(path, response.status_code, response['Content-Type'])\n"
    )

    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    answers = [line.split(" ", 2) for line in done.stdout.splitlines() if line.startswith("/")]
    assert [(path, status) for path, status, _ in answers] == [(p, "200") for p in [*PAGES, answers[-1][0]]]
    assert [kind for _, _, kind in answers[:-1]] == [f"{t}; charset=utf-8" for t in PAGES.values()]
