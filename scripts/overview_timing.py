"""Time the operations overview's queries on a large PostgreSQL database.

    createdb sagaflow_overview_timing
    DATABASE_URL=postgres://root@127.0.0.1:5432/sagaflow_overview_timing .venv/bin/python scripts/overview_timing.py

Migrates the database, fills it (unless it holds sagas already, or with --refill) with --orders orders and their
sagas spread over --days days, one published outbox row each, --dead-letters dead letters and a few workers'
heartbeats, all in generate_series SQL; then builds the overview as the admin's index does and runs EXPLAIN
ANALYZE on every query it made. Prints a Markdown table (docs/operations.md keeps the figures).

`fill()` is also what the browser test uses to give the overview's charts something to draw.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Each saga's fate by a die of 1000 faces: the shares of a day of orders with a few failures of each kind.
SAGA_ROWS = """
WITH g AS (
    SELECT i,
           %(now)s::timestamptz - (%(span_s)s * i::float / %(n)s) * interval '1 second' AS created,
           floor(random() * 1000)::int AS dice,
           random() AS r
    FROM generate_series(1, %(n)s) AS i
), fate AS (
    SELECT i, created, r,
           CASE
               WHEN created > %(now)s::timestamptz - interval '20 seconds' AND dice < 500 THEN 'PAYMENT_PENDING'
               WHEN created > %(now)s::timestamptz - interval '20 seconds' AND dice < 700 THEN 'INVENTORY_PENDING'
               WHEN dice < 30 THEN 'FAILED'
               WHEN dice < 45 THEN 'FAILED'
               WHEN dice < 50 THEN 'FAILED'
               WHEN dice < 58 THEN 'CANCELLED'
               ELSE 'COMPLETED'
           END AS state,
           CASE
               WHEN dice < 30 THEN 'insufficient_funds'
               WHEN dice < 45 THEN 'out_of_stock'
               WHEN dice < 50 THEN 'timeout'
               WHEN dice < 58 THEN 'cancelled'
               ELSE ''
           END AS reason
    FROM g
)
INSERT INTO saga_saga (order_id, state, state_entered_at, failure_reason, failure_detail, customer_id, amount,
                       currency, items, compensation_attempts, compensation_due_at, created_at, updated_at)
SELECT md5(%(seed)s || i)::uuid, state,
       created + CASE
           WHEN state IN ('PAYMENT_PENDING', 'INVENTORY_PENDING') THEN interval '0'
           WHEN reason = 'timeout' THEN (30 + r * 5) * interval '1 second'
           ELSE (0.04 + r ^ 4 * 3) * interval '1 second'
       END,
       reason, '', 'customer-' || (i %% 5000), 20.00, 'EUR', '[{"sku": "sku-1", "quantity": 1}]', 0, NULL,
       created, created
FROM fate
"""

ORDER_ROWS = """
INSERT INTO orders_order (id, customer_id, status, total, currency, failure_reason, failure_detail,
                          idempotency_key, request_fingerprint, created_at, updated_at)
SELECT order_id, customer_id,
       CASE WHEN state IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN state ELSE 'PENDING' END,
       amount, currency, failure_reason, '', NULL, '', created_at, state_entered_at
FROM saga_saga s WHERE NOT EXISTS (SELECT 1 FROM orders_order o WHERE o.id = s.order_id)
"""

OUTBOX_ROWS = """
INSERT INTO messaging_outboxmessage (message_id, routing_key, payload, headers, correlation_id, causation_id,
                                     order_id, target_queue, created_at, published_at, publish_attempts)
SELECT md5('outbox' || order_id::text)::uuid, 'order.created', '{}', '{}', '', '', order_id::text, '', created_at,
       CASE WHEN created_at > %(now)s::timestamptz - interval '2 seconds' THEN NULL
            ELSE created_at + interval '4 milliseconds' END,
       1
FROM saga_saga
"""

# Letters of three kinds, more of them lately; two thirds of the older ones replayed or discarded already.
DEAD_LETTER_ROWS = """
WITH g AS (
    SELECT i, %(now)s::timestamptz - (%(span_s)s * (i::float / %(n)s) ^ 3) * interval '1 second' AS at
    FROM generate_series(1, %(n)s) AS i
)
INSERT INTO messaging_deadletter (message_id, routing_key, queue, body, headers, reason, detail, traceback,
                                  attempts, first_failed_at, last_failed_at, replayed_at, replayed_by, replay_count,
                                  discarded_at, discarded_by, fingerprint, edited_body, edited_by)
SELECT md5('letter' || i)::text,
       (ARRAY['payment.process', 'inventory.reserve', 'payment.processed'])[1 + i %% 3],
       (ARRAY['payments', 'inventory', 'saga'])[1 + i %% 3],
       '{}', '{}',
       (ARRAY['handler_error', 'invalid_payload', 'handler_error', 'unknown_message'])[1 + i %% 4],
       'KeyError: amount', '', 1 + i %% 3, at, at,
       CASE WHEN at < %(now)s::timestamptz - interval '1 hour' AND i %% 3 = 0 THEN at + interval '5 minutes' END,
       '', CASE WHEN at < %(now)s::timestamptz - interval '1 hour' AND i %% 3 = 0 THEN 1 ELSE 0 END,
       CASE WHEN at < %(now)s::timestamptz - interval '1 hour' AND i %% 3 = 1 THEN at + interval '5 minutes' END,
       '', left(md5('reason' || (1 + i %% 4)), 12), '', ''
FROM g
"""

LOOPS = ["payments", "inventory", "saga", "dead_letters", "relay"]


def fill(cursor, *, orders: int, span: timedelta, dead_letters: int, now: datetime, seed: str = "s") -> None:
    """Orders, their sagas, an outbox row each, dead letters and heartbeats, in a few INSERT ... SELECT."""
    cursor.execute("SELECT setseed(0.42)")
    span_s = span.total_seconds()
    cursor.execute(SAGA_ROWS, {"now": now, "span_s": span_s, "n": orders, "seed": seed})
    cursor.execute(ORDER_ROWS)
    # One NOTIFY per row from the relay's trigger is of no use to a filled table.
    cursor.execute("ALTER TABLE messaging_outboxmessage DISABLE TRIGGER messaging_outbox_notify")
    cursor.execute(OUTBOX_ROWS, {"now": now})
    cursor.execute("ALTER TABLE messaging_outboxmessage ENABLE TRIGGER messaging_outbox_notify")
    if dead_letters:
        cursor.execute(DEAD_LETTER_ROWS, {"now": now, "span_s": span_s, "n": dead_letters})
    for worker in ("worker-a:101", "worker-b:102"):
        for loop in LOOPS:
            # worker-b's saga thread has been silent for two minutes: the overview shows it wedged
            silent = worker.startswith("worker-b") and loop == "saga"
            cursor.execute(
                "INSERT INTO messaging_workerheartbeat (worker, loop, started_at, beat_at) VALUES (%s, %s, %s, %s)",
                [worker, loop, now - timedelta(hours=2), now - timedelta(seconds=120 if silent else 3)],
            )
    for table in ("saga_saga", "orders_order", "messaging_outboxmessage", "messaging_deadletter"):
        cursor.execute(f"ANALYZE {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--dead-letters", type=int, default=50_000)
    parser.add_argument("--refill", action="store_true", help="empty the tables and fill them again")
    parser.add_argument("--runs", type=int, default=5, help="warm runs of the whole overview")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("DATABASE_URL must name a PostgreSQL database to fill (a scratch one: its tables are filled)")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    # A bulk load of a million rows takes longer than the product allows one of its statements.
    os.environ.setdefault("DATABASE_STATEMENT_TIMEOUT_S", "0")
    os.environ.setdefault("BROKER_URL", "memory://")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from config import overview as page
    from saga import selectors
    from saga.models import Saga

    call_command("migrate", verbosity=0)
    now = timezone.now()
    with connection.cursor() as cursor:
        if args.refill:
            cursor.execute(
                "TRUNCATE saga_saga, orders_order, orders_orderline, saga_sagatransition, messaging_outboxmessage,"
                " messaging_deadletter, messaging_workerheartbeat CASCADE"
            )
        if not Saga.objects.exists():
            started = time.perf_counter()
            fill(cursor, orders=args.orders, span=timedelta(days=args.days), dead_letters=args.dead_letters, now=now)
            # As autovacuum leaves a table in service: its visibility map set, so an index-only scan is one.
            for table in ("saga_saga", "messaging_outboxmessage", "messaging_deadletter"):
                cursor.execute(f"VACUUM ANALYZE {table}")
            print(f"filled {args.orders:,} orders in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        cursor.execute(
            "SELECT (SELECT count(*) FROM saga_saga), (SELECT count(*) FROM messaging_outboxmessage),"
            " (SELECT count(*) FROM messaging_deadletter),"
            " pg_size_pretty(pg_total_relation_size('saga_saga')), (SELECT max(created_at) FROM saga_saga)"
        )
        sagas, outbox, letters, size, newest = cursor.fetchone()
    # The figures are read as of the newest saga, so that a database filled earlier still has a busy window.
    now = newest + timedelta(seconds=1)

    selectors._tally = selectors._SagaTally()  # the first read of a process counts the settled sagas once
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as first:
        page.overview(now=now)
    cold_ms = (time.perf_counter() - started) * 1000
    warm = []
    for _ in range(args.runs):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            page.overview(now=now)
        warm.append((time.perf_counter() - started) * 1000)

    print(f"{sagas:,} sagas and orders ({size} of saga table), {outbox:,} outbox rows, {letters:,} dead letters")
    print(f"overview, first in a process: {cold_ms:.0f} ms ({len(first.captured_queries)} queries)")
    print(f"overview, then (median of {args.runs}): {sorted(warm)[len(warm) // 2]:.0f} ms ({len(captured)} queries)")
    print()
    print("| query | plan | ms |")
    print("|---|---|---:|")
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0][0]
            print(f"| `{_summary(sql)}` | {_nodes(plan['Plan'])} | {plan['Execution Time']:.1f} |")


def _summary(sql: str) -> str:
    """The query in a few words: its tables and its filter."""
    flat = " ".join(sql.split())
    tables = ", ".join(dict.fromkeys(re.findall(r'FROM "(\w+)"', flat)))
    where = flat.split(" WHERE ", 1)[1] if " WHERE " in flat else ""
    where = re.sub(r"'(\d{4}-\d\d-\d\d)[^']*'::timestamptz", r"'\1...'", re.sub(r'"\w+"\.', "", where))
    where = where.replace('"', "").replace("|", "/")
    return f"{tables} WHERE {where[:100]}" if where else tables


def _nodes(plan: dict) -> str:
    """The scans of a plan: how each table is read (Index Scan using ..., Seq Scan on ...)."""
    found = []

    def walk(node: dict) -> None:
        if "Scan" in node["Node Type"]:
            index = node.get("Index Name")
            found.append(f"{node['Node Type']} {index or node.get('Relation Name', '')}".strip())
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return "; ".join(dict.fromkeys(found)) or plan["Node Type"]


if __name__ == "__main__":
    main()
