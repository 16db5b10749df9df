"""Forgetting what is no longer needed: published outbox rows and inbox rows past their retention.

Without it both tables grow by every message for ever (six outbox rows and five inbox rows an order). Rows go
in batches, each its own short transaction: a day of messages deleted at once would be one long transaction.
An outbox row not yet published is never pruned, however old.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from messaging.models import InboxMessage, OutboxMessage

logger = logging.getLogger(__name__)

PRUNE_BATCH_SIZE = 5000


def prune_outbox(now: datetime | None = None) -> int:
    """Delete outbox rows published more than OUTBOX_RETENTION_DAYS ago. Returns how many went.

    Walks the primary key from the oldest row instead of filtering on `published_at`, which has no index (an
    index the relay would have to update at every publish).
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.OUTBOX_RETENTION_DAYS)
    deleted, after = 0, 0
    while True:
        batch = list(
            OutboxMessage.objects.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "published_at", "created_at")[:PRUNE_BATCH_SIZE]
        )
        if not batch:
            break
        expired = [pk for pk, published_at, _ in batch if published_at is not None and published_at < cutoff]
        if expired:
            deleted += OutboxMessage.objects.filter(pk__in=expired).delete()[0]
        after, newest_created = batch[-1][0], batch[-1][2]
        if newest_created >= cutoff:
            break  # the rows after these were written within the retention
    if deleted:
        logger.info("pruned %s published outbox messages older than %s days", deleted, settings.OUTBOX_RETENTION_DAYS)
    return deleted


def delete_in_batches(expired: QuerySet) -> int:
    """Delete the rows of `expired` PRUNE_BATCH_SIZE at a time, each batch its own statement. Returns how many."""
    deleted = 0
    while batch := list(expired.values_list("pk", flat=True)[:PRUNE_BATCH_SIZE]):
        deleted += expired.model.objects.filter(pk__in=batch).delete()[0]
    return deleted


def prune_inbox(now: datetime | None = None) -> int:
    """Delete inbox rows older than INBOX_RETENTION_DAYS: far longer than any redelivery can take."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.INBOX_RETENTION_DAYS)
    deleted = delete_in_batches(InboxMessage.objects.filter(processed_at__lt=cutoff))
    if deleted:
        logger.info("pruned %s inbox rows older than %s days", deleted, settings.INBOX_RETENTION_DAYS)
    return deleted
