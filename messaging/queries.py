"""The written-out statements of messaging: those every message runs (config/kernel/sql.py says why they skip
the ORM's building, and how they keep its meaning). The relay's listening connection runs its own LISTEN and
probe (messaging/relay.py): they are the connection's, not the data's."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone

from config.kernel import sql
from messaging.models import InboxMessage, OutboxMessage
from messaging.outbox import NOTIFY_CHANNEL


def inbox_record(*, consumer: str, message_id: str, routing_key: str, processed_at: datetime) -> bool:
    """Insert the inbox row of a message a consumer applies; False when that consumer has applied it before.

    One statement: a concurrent insert of the same message waits for the other transaction, then conflicts if
    that one committed."""
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_INBOX, [consumer, message_id, routing_key, processed_at])
        return cursor.fetchone() is not None


_INSERT_INBOX = (
    f"INSERT INTO {sql.table(InboxMessage)} (consumer, message_id, routing_key, processed_at) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer, message_id) DO NOTHING RETURNING id"
)


# The relay's statements run for every batch: building them through the ORM cost more CPU than the rest of a
# pass. Its rows are read through config/kernel/sql.py rather than a RawQuerySet, which cost 207 µs of CPU to
# claim five rows against 155.
_OUTBOX = sql.table(OutboxMessage)
_OUTBOX_FIELDS = sql.attnames(OutboxMessage)


def outbox_claim(batch_size: int, ids: list[int] | None = None, skip: list[int] | None = None) -> list[OutboxMessage]:
    """Lock up to `batch_size` unpublished rows, oldest first, skipping rows another relay holds, those of
    `skip`, and those a worker may still hand off itself (their lease not ended). Must run in a transaction.
    With `ids`, only those rows: found through the primary key, where a scan of the unpublished rows also walks
    the entries of rows published since the last vacuum."""
    now = sql.adapt(OutboxMessage, "handoff_until", timezone.now())
    if ids:
        params, limit = ids[:batch_size], None
        where = f"id IN ({sql.placeholders(params)}) AND published_at IS NULL AND {_NOT_LEASED} ORDER BY id"
        params = [*params, now]
    else:
        params, limit, where = [now], batch_size, f"published_at IS NULL AND {_NOT_LEASED} ORDER BY created_at, id"
        if skip:
            skipped, where = _skipping(skip, where)
            params = [*skipped, now]
    rows = sql.select(OutboxMessage, _OUTBOX_FIELDS, where, params, limit=limit, lock=True, skip_locked=True)
    return [sql.loaded(OutboxMessage, **values) for values in rows]


_NOT_LEASED = "(handoff_until IS NULL OR handoff_until < %s)"


def outbox_claim_handoff(ids: list[int]) -> list[int]:
    """Lock those of the rows `ids` still unpublished, skipping any a relay holds: the ones this transaction
    hands off. Must run in a transaction."""
    where = f"id IN ({sql.placeholders(ids)}) AND published_at IS NULL ORDER BY id"
    return [values["id"] for values in sql.select(OutboxMessage, ["id"], where, ids, lock=True, skip_locked=True)]


def outbox_mark_handed_off(ids: list[int]) -> None:
    """Mark the rows `ids` published, now, by a hand-off."""
    sql.execute(
        f"UPDATE {_OUTBOX} SET published_at = %s, handed_off = %s WHERE id IN ({sql.placeholders(ids)})",
        [sql.adapt(OutboxMessage, "published_at", timezone.now()), True, *ids],
    )


def outbox_release_to_relay(ids: list[int]) -> list[str]:
    """End the lease of those of the rows `ids` still unpublished, now (a row leased once is the broker's to
    deliver), and wake the relays for them (the trigger announces inserts only); returns the routing keys of
    the rows released."""
    where = f"id IN ({sql.placeholders(ids)}) AND published_at IS NULL"
    released = f"UPDATE {_OUTBOX} SET handoff_until = %s WHERE {where} RETURNING id, routing_key"
    if connection.vendor == "postgresql":
        released = (
            f"WITH released AS ({released}) SELECT routing_key, pg_notify('{NOTIFY_CHANNEL}', id::text) FROM released"
        )
    with connection.cursor() as cursor:
        cursor.execute(released, [sql.adapt(OutboxMessage, "handoff_until", timezone.now()), *ids])
        return [row[0] if connection.vendor == "postgresql" else row[1] for row in cursor.fetchall()]


def _skipping(skip: list[int], where: str) -> tuple[list, str]:
    # One array parameter on PostgreSQL: the statement stays the same however many rows are skipped.
    if connection.vendor == "postgresql":
        return [skip], f"NOT (id = ANY(%s)) AND {where}"
    return list(skip), f"id NOT IN ({sql.placeholders(skip)}) AND {where}"


def outbox_mark_published(ids: list[int]) -> None:
    """Mark the rows `ids` published, now."""
    sql.execute(
        f"UPDATE {_OUTBOX} SET published_at = %s WHERE id IN ({sql.placeholders(ids)})",
        [sql.adapt(OutboxMessage, "published_at", timezone.now()), *ids],
    )


def advisory_lock_for_transaction(key: int) -> None:
    """Hold PostgreSQL's advisory lock `key` until the current transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
