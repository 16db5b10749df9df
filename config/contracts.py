"""The contracts of the messages as the product serves them and as the README shows them.

Beside /api/schema and /api/docs (the HTTP API), and public like them:
- /api/messages: a page listing every message (kind, producer, consumers, payload) and the saga's diagram;
- /api/messages/schema: the JSON Schema of every payload (`application/schema+json`);
- /api/asyncapi: the AsyncAPI 3.0 document, YAML, or JSON with `?format=json` or `Accept: application/json`
  (as /api/schema).

Here rather than in `messaging` because the page and the README join the messages with the saga's diagram,
and `messaging` knows no saga. The README's blocks between `<!-- generated: NAME -->` and `<!-- /generated -->`
are rewritten by `manage.py contracts --write-readme`, and a test fails when they drift.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from config.kernel.api import json_error
from config.views import JsonMethodNotAllowedMixin
from messaging import contracts
from messaging.catalogue import CATALOGUE, field_schema
from saga import diagram

ASYNCAPI_JSON = f"application/vnd.aai.asyncapi+json; version={contracts.ASYNCAPI_VERSION}"
ASYNCAPI_YAML = f"application/vnd.aai.asyncapi+yaml; version={contracts.ASYNCAPI_VERSION}"
JSON_SCHEMA = "application/schema+json"


@method_decorator(csrf_exempt, name="dispatch")  # a POST is a JSON 405, not the CSRF failure page
class _PublicDocumentView(JsonMethodNotAllowedMixin, View):
    """A read-only document of the product: GET or HEAD, no token, any other method a JSON 405."""

    http_method_names = ["get", "head", "options"]


class MessagesPageView(_PublicDocumentView):
    """The readable page: every message, the topology's queues, and the saga's state diagram."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(
            request,
            "config/messages.html",
            {
                "rows": [(row, inline_code(row.summary)) for row in contracts.catalogue_rows()],
                "types": field_types(),
                "envelope": envelope_rows(),
                "queues": queue_rows(contracts.asyncapi()),
                "saga_diagram": diagram.mermaid(),
            },
        )


class MessageSchemaView(_PublicDocumentView):
    def get(self, request: HttpRequest) -> HttpResponse:
        return _document(catalogue_schema_text(), JSON_SCHEMA)


class AsyncApiView(_PublicDocumentView):
    def get(self, request: HttpRequest) -> HttpResponse:
        wanted = request.GET.get("format") or ("json" if "json" in request.headers.get("Accept", "") else "yaml")
        if wanted not in ASYNCAPI_FORMATS:
            return json_error(400, "invalid_format", "format must be yaml or json.", {"format": wanted})
        return _document(asyncapi_text(wanted), ASYNCAPI_FORMATS[wanted])


def _document(body: str, content_type: str) -> HttpResponse:
    return HttpResponse(body, content_type=f"{content_type}; charset=utf-8")


ASYNCAPI_FORMATS = {"yaml": ASYNCAPI_YAML, "json": ASYNCAPI_JSON}


def asyncapi_text(wanted: str = "yaml") -> str:
    """The AsyncAPI document as text: "yaml" or "json"."""
    document = contracts.asyncapi()
    if wanted == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def catalogue_schema_text() -> str:
    return json.dumps(contracts.catalogue_schema(), indent=2) + "\n"


def inline_code(text: str) -> str:
    """Markdown's `code` spans as HTML, everything else escaped."""
    return mark_safe(re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text)))


def field_types() -> list[tuple[str, str]]:
    """Each payload field type the catalogue uses, once: (its name, what it accepts)."""
    seen: dict[str, str] = {}
    for message in CATALOGUE.values():
        for check in message.fields.values():
            schema = field_schema(check)
            seen.setdefault(schema["title"], schema.get("description", ""))
    return list(seen.items())


def envelope_rows() -> list[tuple[str, str, str]]:
    """Each field of the envelope: its name, whether an AMQP property or header, and what it holds."""
    rows = []
    for sent_as, schema in (
        ("property", contracts.envelope_properties_schema()),
        ("header", contracts.envelope_headers_schema()),
    ):
        for name, field in schema["properties"].items():
            meaning = field.get("description") or (f"always {field['const']}" if "const" in field else "")
            rows.append((name, sent_as, meaning))
    return rows


def queue_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The queues of an AsyncAPI document: name, arguments and what they are bound to."""
    rows = []
    for channel in document["channels"].values():
        amqp = channel["bindings"]["amqp"]
        if amqp["is"] == "queue":
            rows.append(
                {
                    "name": amqp["queue"]["name"],
                    "title": channel["title"],
                    "arguments": amqp.get("x-arguments", {}),
                    "bound_to": amqp.get("x-bound-to", []),
                }
            )
    return rows


# The README's generated blocks.

MARKER = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.DOTALL)


def readme_blocks() -> dict[str, str]:
    """What each generated block of the README holds, by name."""
    return {
        "saga-diagram": f"```mermaid\n{diagram.mermaid()}```\n\n{DIAGRAM_LEGEND}\n",
        "message-catalogue": catalogue_markdown(),
    }


DIAGRAM_LEGEND = (
    "Each arrow is `messages / messages emitted`; a loop is a reply that came too late, compensated. Any other "
    "message\nchanges nothing. Drawn by `saga/diagram.py` from the table that\n"
    "`saga/definition.py` generates from the steps of `saga/steps.py`."
)


def catalogue_markdown() -> str:
    """The message catalogue as a Markdown table, then what each field type accepts."""
    lines = ["| routing key | kind | from → to | payload | meaning |", "|---|---|---|---|---|"]
    for row in contracts.catalogue_rows():
        fields = ", ".join(f"`{name}` {kind}" for name, kind in row.fields)
        consumers = ", ".join(row.consumers) or "(no consumer here)"
        lines.append(f"| `{row.routing_key}` | {row.kind} | {row.producer} → {consumers} | {fields} | {row.summary} |")
    lines.append("")
    lines += [f"- {name}: {meaning}." if meaning else f"- {name}." for name, meaning in field_types()]
    return "\n".join(lines) + "\n"


def readme_rewritten(text: str) -> str:
    """`text` with every generated block filled in anew. Raises LookupError when a block is missing."""
    blocks = readme_blocks()
    missing = set(blocks) - {m.group(2) for m in MARKER.finditer(text)}
    if missing:
        raise LookupError(f"the README has no block {', '.join(sorted(missing))}")
    return MARKER.sub(lambda m: m.group(1) + blocks.get(m.group(2), m.group(3)) + m.group(4), text)


def readme_drift(text: str) -> list[str]:
    """The names of the README's generated blocks that are missing or differ from what the code generates."""
    found = {m.group(2): m.group(3) for m in MARKER.finditer(text)}
    return sorted(name for name, block in readme_blocks().items() if found.get(name) != block)
