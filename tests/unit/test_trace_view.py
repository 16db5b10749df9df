"""scripts/trace_view.py: reads spans from the console exporter's output or a JSON list, lists each span under
its parent, and can leave the statements out."""

from __future__ import annotations

import json

from scripts import trace_view


def span(name: str, span_id: str, parent: str | None, start: str, end: str, **attributes) -> dict:
    return {
        "name": name,
        "context": {"trace_id": "0xabc", "span_id": span_id},
        "kind": "SpanKind.CLIENT" if "db.system" in attributes else "SpanKind.INTERNAL",
        "parent_id": parent,
        "start_time": f"2026-12-02T01:00:{start}Z",
        "end_time": f"2026-12-02T01:00:{end}Z",
        "attributes": attributes,
        "links": [],
        "resource": {"attributes": {"service.name": "sagaflow-web"}},
    }


SPANS = [
    span("POST api/orders", "0x1", None, "00.000000", "00.100000"),
    span("INSERT", "0x2", "0x1", "00.010000", "00.020000", **{"db.system": "postgresql", "db.statement": "INSERT x"}),
    span("create order.created", "0x3", "0x2", "00.012000", "00.015000"),
    span("process payments", "0x4", "0x1", "00.050000", "00.090000"),
]


def test_spans_are_read_from_the_console_exporters_lines_among_log_lines(tmp_path):
    output = tmp_path / "web.log"
    lines = ['{"level": "INFO", "message": "hello"}', "not json", *(json.dumps(s) for s in SPANS)]
    output.write_text("\n".join(lines))

    assert [s["name"] for s in trace_view.read_spans([output])] == [s["name"] for s in SPANS]


def test_each_span_is_listed_under_its_parent_in_start_order():
    assert [(depth, s["name"]) for depth, s in trace_view.rows(SPANS)] == [
        (0, "POST api/orders"),
        (1, "INSERT"),
        (2, "create order.created"),
        (1, "process payments"),
    ]


def test_without_statements_their_children_hang_from_the_statements_parent():
    kept = trace_view._without_statements(SPANS)

    assert [(depth, s["name"]) for depth, s in trace_view.rows(kept)] == [
        (0, "POST api/orders"),
        (1, "create order.created"),
        (1, "process payments"),
    ]


def test_the_page_names_every_span_and_the_statement():
    page, height = trace_view.render(SPANS, "one order")

    assert all(s["name"] in page for s in SPANS) and "INSERT x" in page and "100 ms" in page
    assert height > len(SPANS) * trace_view.ROW_HEIGHT
