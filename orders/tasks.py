from celery import shared_task

from orders import webhooks


@shared_task(name="orders.tasks.prune_webhook_attempts", ignore_result=True)
def prune_webhook_attempts() -> int:
    """Forget webhook attempts older than WEBHOOK_ATTEMPT_RETENTION_DAYS."""
    return webhooks.prune_attempts()
