"""The timeout sweep, run by Celery beat every SAGA_SWEEP_INTERVAL_S."""

from celery import shared_task

from saga.services import saga_sweep_timeouts


@shared_task(name="saga.tasks.sweep_timeouts", ignore_result=True)
def sweep_timeouts() -> int:
    return saga_sweep_timeouts()
