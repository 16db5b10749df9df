"""Per-order serialisation inside one bounded context."""

from __future__ import annotations

import hashlib

from django.db import connection

from messaging import queries


def order_lock(scope: str, order_id: str) -> None:
    """Hold a lock on (scope, order) until the current transaction ends. Must run in a transaction.

    PostgreSQL takes a transaction-level advisory lock. SQLite needs none: its IMMEDIATE transactions
    already serialise every writer.
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"{scope}:{order_id}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    queries.advisory_lock_for_transaction(key)
