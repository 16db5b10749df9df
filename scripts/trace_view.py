"""Draws one trace as a waterfall, the way a trace viewer shows it: each span a row under its parent, its bar on
the trace's time line, coloured by the process that recorded it.

It reads spans in the OpenTelemetry SDK's JSON form: a file holding a JSON list of them (tests/e2e/test_tracing.py
keeps one for each traced order), or the output of processes run with OTEL_TRACES_EXPORTER=console (one span a
line among the log lines). It writes a self-contained HTML page, and with --png a screenshot of it taken by
headless Chromium.

    .venv/bin/python scripts/trace_view.py /tmp/sagaflow-test-logs/trace-<order>.json --out trace.html --png trace.png
    .venv/bin/python scripts/trace_view.py web.log worker.log --trace <trace id> --out trace.html
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

Span = dict[str, Any]

COLOURS = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6"]
ROW_HEIGHT = 22
HEADER_HEIGHT = 122  # the heading, and the time axis under it
# Attributes shown beside a span's name, first found first.
DETAIL = [
    "db.query.text",
    "db.statement",
    "http.route",
    "sagaflow.inbox.outcome",
    "sagaflow.verdict",
    "sagaflow.relay.lag_ms",
]


def read_spans(paths: list[Path]) -> list[Span]:
    spans: list[Span] = []
    for path in paths:
        text = path.read_text(errors="replace")
        try:
            found = json.loads(text)
        except json.JSONDecodeError:
            found = [_line_span(line) for line in text.splitlines()]
        spans.extend(span for span in (found if isinstance(found, list) else [found]) if _is_span(span))
    return spans


def _line_span(line: str) -> Span | None:
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _is_span(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("context"), dict) and "start_time" in value


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def one_trace(spans: list[Span], trace_id: str | None) -> list[Span]:
    """The spans of `trace_id`, or of the trace with the most spans."""
    by_trace: dict[str, list[Span]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], []).append(span)
    if not by_trace:
        raise SystemExit("no spans found")
    if trace_id:
        wanted = trace_id if trace_id.startswith("0x") else f"0x{trace_id}"
        if wanted not in by_trace:
            raise SystemExit(f"no span of trace {trace_id}")
        return by_trace[wanted]
    return max(by_trace.values(), key=len)


def rows(spans: list[Span]) -> list[tuple[int, Span]]:
    """(depth, span) in the order a viewer lists them: each span after its parent, siblings by start time."""
    ids = {span["context"]["span_id"] for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.get("parent_id")
        children.setdefault(parent if parent in ids else None, []).append(span)
    ordered: list[tuple[int, Span]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start_time"]):
            ordered.append((depth, span))
            walk(span["context"]["span_id"], depth + 1)

    walk(None, 0)
    return ordered


def render(spans: list[Span], title: str = "") -> tuple[str, int]:
    """The HTML page of one trace, and its height in pixels."""
    listed = rows(spans)
    start = min(_time(span["start_time"]) for span in spans)
    end = max(_time(span["end_time"]) for span in spans)
    total = max(end - start, 1e-6)
    services = sorted({_service(span) for span in spans})
    colour = {name: COLOURS[index % len(COLOURS)] for index, name in enumerate(services)}
    trace_id = spans[0]["context"]["trace_id"].removeprefix("0x")
    legend = "".join(
        f'<span class="tag"><i style="background:{colour[name]}"></i>{html.escape(name)}</span>' for name in services
    )
    ticks = "".join(
        f'<span class="tick" style="left:{fraction * 100:.2f}%">{total * fraction * 1000:.0f} ms</span>'
        for fraction in (0, 0.25, 0.5, 0.75, 1)
    )
    body = []
    for depth, span in listed:
        begin, finish = _time(span["start_time"]) - start, _time(span["end_time"]) - start
        left, width = begin / total * 100, max((finish - begin) / total * 100, 0.15)
        failed = (span.get("status") or {}).get("status_code") == "ERROR"
        kind = span.get("kind", "").removeprefix("SpanKind.").lower()
        detail = _detail(span)
        links = len(span.get("links") or [])
        body.append(
            f'<div class="row{" failed" if failed else ""}">'
            f'<div class="name" style="padding-left:{8 + depth * 14}px" title="{html.escape(detail)}">'
            f'<i style="background:{colour[_service(span)]}"></i><b>{html.escape(span["name"])}</b>'
            f'<span class="kind">{kind}</span>{" <span class=link>&#8599; link</span>" if links else ""}'
            f'<span class="detail">{html.escape(detail[:90])}</span></div>'
            f'<div class="lane"><div class="bar" style="left:{left:.3f}%;width:{width:.3f}%;'
            f'background:{colour[_service(span)]}"></div>'
            f"{_duration_label(left, width, finish - begin)}"
            "</div></div>"
        )
    height = HEADER_HEIGHT + ROW_HEIGHT * len(listed) + 24
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>trace {trace_id}</title><style>
body {{ font: 12px/1.2 "DejaVu Sans", sans-serif; margin: 0; color: #1f2937; background: #fff; }}
header {{ padding: 14px 16px 8px; height: {HEADER_HEIGHT - 22}px; box-sizing: border-box; }}
h1 {{ font-size: 16px; margin: 0 0 6px; }}
.meta {{ color: #4b5563; margin-bottom: 8px; }}
.tag {{ margin-right: 14px; }} i {{ display: inline-block; width: 10px; height: 10px; margin-right: 5px;
  border-radius: 2px; vertical-align: -1px; }}
.axis {{ display: flex; height: 22px; border-bottom: 1px solid #e5e7eb; box-sizing: border-box; }}
.axis .label {{ width: 46%; padding-left: 8px; color: #6b7280; }}
.axis .scale {{ position: relative; flex: 1; margin-right: 70px; }}
.tick {{ position: absolute; color: #6b7280; transform: translateX(-50%); white-space: nowrap; }}
.row {{ display: flex; height: {ROW_HEIGHT}px; align-items: center; border-bottom: 1px solid #f3f4f6;
  box-sizing: border-box; }}
.row:nth-child(odd) {{ background: #fafafa; }} .row.failed b {{ color: #b91c1c; }}
.name {{ width: 46%; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; box-sizing: border-box; }}
.kind {{ color: #6b7280; margin-left: 6px; font-size: 10px; }}
.link {{ color: #7c3aed; font-size: 10px; margin-left: 4px; }}
.detail {{ color: #6b7280; margin-left: 8px; font-family: "DejaVu Sans Mono", monospace; font-size: 10px; }}
.lane {{ position: relative; flex: 1; height: 100%; margin-right: 70px; }}
.bar {{ position: absolute; top: 5px; height: 12px; border-radius: 2px; opacity: .85; }}
.ms {{ position: absolute; top: 4px; margin-left: 4px; color: #374151; font-size: 10px; white-space: nowrap; }}
.ms.before {{ margin: 0 4px 0 0; }}
</style></head><body><header><h1>{html.escape(title or listed[0][1]["name"])}</h1>
<div class="meta">trace {trace_id} · {len(spans)} spans · {total * 1000:.0f} ms · {len(services)} processes</div>
<div>{legend}</div></header>
<div class="axis"><div class="label">span</div><div class="scale">{ticks}</div></div>
{"".join(body)}</body></html>"""
    return page, height


def _duration_label(left: float, width: float, seconds: float) -> str:
    """The duration after the bar, or before it where the bar ends near the right edge."""
    text = f"{seconds * 1000:.1f} ms"
    if left + width > 88:
        return f'<span class="ms before" style="right:{100 - left:.3f}%">{text}</span>'
    return f'<span class="ms" style="left:{left + width:.3f}%">{text}</span>'


def _service(span: Span) -> str:
    return (span.get("resource") or {}).get("attributes", {}).get("service.name", "?")


def _detail(span: Span) -> str:
    attributes = span.get("attributes") or {}
    shown = []
    for name in DETAIL:
        if name in attributes:
            value = attributes[name]
            shown.append(" ".join(str(value).split()) if name.startswith("db.") else f"{name.split('.')[-1]}={value}")
    return " · ".join(shown)


def screenshot(page: Path, png: Path, height: int, width: int = 1400) -> None:
    """A PNG of the page, taken by Debian's headless Chromium (nothing is fetched: the page is self-contained)."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, help="span files: a JSON list, or console exporter output")
    parser.add_argument("--trace", help="the trace id to draw (default: the trace with the most spans)")
    parser.add_argument("--title", default="", help="the page's heading (default: the root span's name)")
    parser.add_argument("--hide-statements", action="store_true", help="leave out the database statements")
    parser.add_argument("--out", type=Path, default=Path("trace.html"), help="the HTML page to write")
    parser.add_argument("--png", type=Path, help="also write a screenshot of the page here")
    args = parser.parse_args(argv)
    spans = one_trace(read_spans(args.inputs), args.trace)
    if args.hide_statements:
        spans = _without_statements(spans)
    page, height = render(spans, args.title)
    args.out.write_text(page)
    if args.png:
        screenshot(args.out, args.png, height)
    print(f"{len(spans)} spans -> {args.out}" + (f", {args.png}" if args.png else ""))
    return 0


def _without_statements(spans: list[Span]) -> list[Span]:
    """The spans but the database statements, each child of one re-attached to that statement's parent."""
    statements = {
        span["context"]["span_id"]: span.get("parent_id")
        for span in spans
        if {"db.system", "db.system.name"} & set(span.get("attributes") or {})
    }
    kept = []
    for span in spans:
        if span["context"]["span_id"] in statements:
            continue
        parent = span.get("parent_id")
        while parent in statements:
            parent = statements[parent]
        kept.append({**span, "parent_id": parent})
    return kept


if __name__ == "__main__":
    sys.exit(main())
