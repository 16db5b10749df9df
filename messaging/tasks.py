"""Periodic tasks run by Celery beat."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from messaging.models import InboxMessage
from messaging.relay import ConfirmingPublisher, relay_once

logger = logging.getLogger(__name__)


@shared_task(name="messaging.tasks.sweep_outbox", ignore_result=True)
def sweep_outbox() -> int:
    """Publish anything the relays left behind (a relay that died mid-batch, a lost NOTIFY)."""
    total = 0
    with Connection(settings.BROKER_URL, heartbeat=0) as broker:
        publisher = ConfirmingPublisher(broker)
        while count := relay_once(publisher):
            total += count
    if total:
        logger.info("outbox sweep published %s messages", total)
    return total


@shared_task(name="messaging.tasks.prune_inbox", ignore_result=True)
def prune_inbox() -> int:
    """Forget inbox rows older than the retention: far longer than any redelivery can take."""
    cutoff = timezone.now() - timedelta(days=settings.INBOX_RETENTION_DAYS)
    deleted, _ = InboxMessage.objects.filter(processed_at__lt=cutoff).delete()
    return deleted
