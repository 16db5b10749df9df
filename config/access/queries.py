"""The written-out statements of API access: the one that authenticates every request, and the rate limit's
(config/kernel/sql.py says why a statement on every request skips the ORM's building)."""

from __future__ import annotations

from django.db import connection

from config.access.models import ApiToken, RateLimit
from config.kernel import sql

# What a request needs of its token; it is read on every request.
AUTHENTICATED_FIELDS = ("id", "role", "customer_id", "last_used_at")


def live_token(digest: str) -> ApiToken | None:
    """The token that is not revoked whose hash is `digest`, with the fields of AUTHENTICATED_FIELDS."""
    found = sql.select_one(ApiToken, AUTHENTICATED_FIELDS, "key_hash = %s AND revoked_at IS NULL", [digest])
    return None if found is None else sql.loaded(ApiToken, key_hash=digest, **found)


def rate_limit_take_one(*, key: str, interval: float, tolerance: float, now: float | None) -> bool:
    """Move the theoretical arrival of `key` on by `interval` if that keeps it within `tolerance` of now; True
    when it did (the request passes). One statement, atomic under concurrency; a refusal changes nothing.

    Without `now`, the database's clock at the moment the statement runs: a time read before waiting for the
    row's lock would be older than a later caller's, and refuse a request the burst still allows. It is also
    one clock for every web host."""
    postgresql = connection.vendor == "postgresql"
    greatest = "GREATEST" if postgresql else "MAX"
    if now is None:
        clock = "EXTRACT(EPOCH FROM clock_timestamp())" if postgresql else "((julianday('now') - 2440587.5) * 86400.0)"
        params: list = []
    else:
        clock, params = "%s", [now]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_RATE_LIMIT} AS bucket (key, theoretical_arrival) VALUES (%s, {clock} + %s) "
            "ON CONFLICT (key) DO UPDATE SET "
            f"theoretical_arrival = {greatest}(bucket.theoretical_arrival, {clock}) + %s "
            f"WHERE {greatest}(bucket.theoretical_arrival, {clock}) - {clock} <= %s RETURNING 1",
            [key, *params, interval, *params, interval, *params, *params, tolerance],
        )
        return cursor.fetchone() is not None


def rate_limit_arrival(key: str) -> float | None:
    """The theoretical arrival of `key`, in seconds since the epoch; None when it has none."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT theoretical_arrival FROM {_RATE_LIMIT} WHERE key = %s", [key])
        row = cursor.fetchone()
    return row[0] if row else None


_RATE_LIMIT = sql.table(RateLimit)
