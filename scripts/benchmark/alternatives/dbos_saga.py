"""The same order saga as a DBOS Transact workflow behind the bench's subset of the API: the alternative that
Python users most often weigh against sagaflow, measured by the same harness (`scripts/bench.py --system dbos`).

The saga is the product's: take payment, reserve stock, complete; when the stock is short, refund the payment
and fail the order. Each step is a DBOS datasource transaction, checkpointed with the workflow in DBOS's system
database, so a process that dies mid-saga resumes it at its next launch. It runs in the web process, on
DBOS's executor threads: there is no broker hop. The tables bear the product's names (orders_order with its
`updated_at` stamped in the transaction that makes the order final), so that the bench's poller and figures
read it as they read the product.

POST /api/orders writes the order, then starts its workflow under the order's id: the way a DBOS user writes a
handler that must answer with the order it made. The bench's load does not kill the process, so the moment
between the two does not matter to the figures.

Run by the bench in its own virtualenv (.venv-dbos, from requirements-dbos.txt), with uvicorn:
    DBOS_BENCH_DATABASE_URL=postgresql://... DBOS_BENCH_SYSTEM_DATABASE_URL=postgresql://... \
    uvicorn scripts.benchmark.alternatives.dbos_saga:app --workers 2
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, SetWorkflowID, SQLAlchemyDatasource
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory_product (
    sku text PRIMARY KEY, name text NOT NULL, price numeric(12, 2) NOT NULL, stock integer NOT NULL
);
CREATE TABLE IF NOT EXISTS payments_account (customer_id text PRIMARY KEY, balance numeric(14, 2) NOT NULL);
CREATE TABLE IF NOT EXISTS payments_payment (
    order_id uuid PRIMARY KEY, customer_id text NOT NULL, amount numeric(14, 2) NOT NULL, status text NOT NULL
);
CREATE TABLE IF NOT EXISTS orders_order (
    id uuid PRIMARY KEY, customer_id text NOT NULL, sku text NOT NULL, quantity integer NOT NULL,
    total numeric(14, 2) NOT NULL, status text NOT NULL, failure_reason text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_order_customer ON orders_order (customer_id, created_at);
CREATE INDEX IF NOT EXISTS orders_order_pending ON orders_order (status) WHERE status = 'PENDING';
"""
PAGE_SIZE_MAX = 200
WAIT_MAX_S = 60
WAIT_POLL_S = 0.05  # as the product's ORDER_WAIT_POLL_S

database_url = os.environ["DBOS_BENCH_DATABASE_URL"]
# Per web process, within PostgreSQL's 100 connections for the two: the requests' and the steps' pool, DBOS's
# own, and no more workflows at once than the pool serves (a burst waits in the executor's queue, durably
# PENDING, rather than each workflow's thread waiting on the pool in front of the requests).
POOL_SIZE = 15
engine = sa.create_engine(database_url, pool_size=POOL_SIZE, max_overflow=0)
config: DBOSConfig = {
    "name": "sagaflow-bench-dbos",
    "system_database_url": os.environ["DBOS_BENCH_SYSTEM_DATABASE_URL"],
    "sys_db_pool_size": POOL_SIZE,
    "max_executor_threads": POOL_SIZE,
    # One executor per web process: each recovers only the workflows it started.
    "executor_id": f"bench-{os.getpid()}",
    "log_level": "WARNING",
}
DBOS(config=config)
store = SQLAlchemyDatasource.create(database_url, engine=engine)


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    with engine.begin() as conn:
        # One web process makes the schema; the other waits on the lock, then finds it made.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(424242)"))
        for statement in filter(str.strip, SCHEMA.split(";")):
            conn.execute(sa.text(statement))
    DBOS.launch()
    yield
    DBOS.destroy()


app = FastAPI(lifespan=lifespan)


# --- the saga ---------------------------------------------------------------------------------------------


def _in_step(statement: str, **params: Any) -> Any:
    """Run `statement` in the current step's transaction; its first row, or None."""
    return store.sql_session().execute(sa.text(statement), params).first()


@store.transaction(isolation_level="READ COMMITTED")
def take_payment(order_id: str) -> bool:
    charged = _in_step(
        "WITH o AS (SELECT customer_id, total FROM orders_order WHERE id = :id),"
        " debit AS (UPDATE payments_account a SET balance = a.balance - o.total FROM o"
        "   WHERE a.customer_id = o.customer_id AND a.balance >= o.total RETURNING a.customer_id, o.total)"
        " INSERT INTO payments_payment (order_id, customer_id, amount, status)"
        " SELECT :id, customer_id, total, 'CHARGED' FROM debit RETURNING order_id",
        id=order_id,
    )
    return charged is not None


@store.transaction(isolation_level="READ COMMITTED")
def reserve_stock(order_id: str) -> bool:
    reserved = _in_step(
        "UPDATE inventory_product p SET stock = p.stock - o.quantity FROM orders_order o"
        " WHERE o.id = :id AND p.sku = o.sku AND p.stock >= o.quantity RETURNING p.sku",
        id=order_id,
    )
    return reserved is not None


@store.transaction(isolation_level="READ COMMITTED")
def refund_payment(order_id: str) -> None:
    _in_step(
        "WITH p AS (UPDATE payments_payment SET status = 'REFUNDED' WHERE order_id = :id AND status = 'CHARGED'"
        "   RETURNING customer_id, amount)"
        " UPDATE payments_account a SET balance = a.balance + p.amount FROM p WHERE a.customer_id = p.customer_id"
        " RETURNING a.customer_id",
        id=order_id,
    )


@store.transaction(isolation_level="READ COMMITTED")
def finish_order(order_id: str, status: str, reason: str) -> None:
    _in_step(
        "UPDATE orders_order SET status = :status, failure_reason = :reason, updated_at = now()"
        " WHERE id = :id AND status = 'PENDING' RETURNING id",
        id=order_id,
        status=status,
        reason=reason,
    )


@DBOS.workflow()
def order_saga(order_id: str) -> str:
    if not take_payment(order_id):
        finish_order(order_id, "FAILED", "payment_declined")
        return "FAILED"
    if not reserve_stock(order_id):
        refund_payment(order_id)
        finish_order(order_id, "FAILED", "out_of_stock")
        return "FAILED"
    finish_order(order_id, "COMPLETED", "")
    return "COMPLETED"


# --- the API ----------------------------------------------------------------------------------------------


def order_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "customer_id": row.customer_id,
        "status": row.status,
        "failure_reason": row.failure_reason or None,
        "total": str(row.total),
        "items": [{"sku": row.sku, "quantity": row.quantity}],
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def bad_request(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


@app.get("/health/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/health")
def health() -> dict[str, str]:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return {"status": "ok"}


@app.post("/api/products", status_code=201)
async def create_product(request: Request) -> dict[str, Any]:
    body = await request.json()
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO inventory_product (sku, name, price, stock) VALUES (:sku, :name, :price, :stock)"),
            {"sku": body["sku"], "name": body.get("name", ""), "price": body["price"], "stock": body["stock"]},
        )
    return body


@app.post("/api/accounts", status_code=201)
async def create_account(request: Request) -> dict[str, Any]:
    body = await request.json()
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO payments_account (customer_id, balance) VALUES (:customer_id, :balance)"),
            {"customer_id": body["customer_id"], "balance": body["balance"]},
        )
    return body


@app.post("/api/orders", status_code=201)
def create_order(body: dict[str, Any]) -> JSONResponse:
    items = body.get("items") or []
    if not isinstance(body.get("customer_id"), str) or len(items) != 1:
        raise bad_request("one item and a customer_id are required")
    sku, quantity = items[0].get("sku"), items[0].get("quantity")
    if not isinstance(quantity, int) or quantity < 1:
        raise bad_request("quantity must be a positive integer")
    order_id, now = str(uuid.uuid4()), dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "INSERT INTO orders_order (id, customer_id, sku, quantity, total, status, created_at, updated_at)"
                " SELECT :id, :customer_id, sku, :quantity, price * :quantity, 'PENDING', :now, :now"
                " FROM inventory_product WHERE sku = :sku RETURNING *"
            ),
            {"id": order_id, "customer_id": body["customer_id"], "quantity": quantity, "now": now, "sku": sku},
        ).first()
    if row is None:
        raise bad_request(f"no product {sku!r}")
    with SetWorkflowID(order_id):
        DBOS.start_workflow(order_saga, order_id)
    return JSONResponse(order_json(row), status_code=201)


def _order_row(order_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT * FROM orders_order WHERE id = :id"), {"id": order_id}).first()


@app.get("/api/orders/{order_id}")
def read_order(order_id: uuid.UUID) -> dict[str, Any]:
    row = _order_row(order_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such order")
    return order_json(row)


def _ended_among(order_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id FROM orders_order WHERE id = ANY(CAST(:ids AS uuid[])) AND status <> 'PENDING'"),
            {"ids": order_ids},
        ).all()
    return {str(row.id) for row in rows}


class EndWatch:
    """The product's design for its waits (orders/waiting.py), so that the two are compared on the rest: all
    the waits of the process share one query per WAIT_POLL_S for the orders that have ended."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[asyncio.Future[None]]] = {}
        self.watching: asyncio.Task[None] | None = None

    async def ended(self, order_id: str, timeout: float) -> bool:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(order_id, []).append(future)
        if self.watching is None or self.watching.done():
            self.watching = asyncio.create_task(self._watch())
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            futures = self.waiting.get(order_id, [])
            if future in futures:
                futures.remove(future)
                if not futures:
                    del self.waiting[order_id]

    async def _watch(self) -> None:
        while self.waiting:
            await asyncio.sleep(WAIT_POLL_S)
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                for order_id in await asyncio.to_thread(_ended_among, list(self.waiting)):
                    for future in self.waiting.pop(order_id, []):
                        if not future.done():
                            future.set_result(None)


end_watch = EndWatch()


@app.get("/api/orders/{order_id}/wait")
async def wait_order(order_id: uuid.UUID, timeout: int = 30) -> dict[str, Any]:
    if not 0 <= timeout <= WAIT_MAX_S:
        raise bad_request(f"timeout must be 0 to {WAIT_MAX_S} seconds")
    row = await asyncio.to_thread(_order_row, order_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such order")
    if row.status == "PENDING" and await end_watch.ended(str(order_id), timeout):
        row = await asyncio.to_thread(_order_row, order_id)
    return order_json(row)


@app.get("/api/orders")
def list_orders(
    customer_id: str | None = None, status: str | None = None, page: int = 1, page_size: int = 50
) -> dict[str, Any]:
    size = max(1, min(page_size, PAGE_SIZE_MAX))
    where, params = [], {"limit": size + 1, "offset": (max(page, 1) - 1) * size}
    if customer_id is not None:
        where.append("customer_id = :customer_id")
        params["customer_id"] = customer_id
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT * FROM orders_order {clause} ORDER BY created_at, id LIMIT :limit OFFSET :offset"), params
        ).all()
    asked = {"customer_id": customer_id, "status": status, "page": page + 1, "page_size": size}
    query = urllib.parse.urlencode({k: v for k, v in asked.items() if v is not None})
    following = f"/api/orders?{query}" if len(rows) > size else None
    return {"results": [order_json(r) for r in rows[:size]], "next": following}
