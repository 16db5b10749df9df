"""The sweep, run by Celery beat every SAGA_SWEEP_INTERVAL_S: times out pending sagas, sends a lost refund again,
and asks again for stock an ended saga still holds (saga.services.saga_sweep_timeouts)."""

from celery import shared_task

from saga.services import saga_sweep_timeouts


@shared_task(name="saga.tasks.sweep_timeouts", ignore_result=True)
def sweep_timeouts() -> int:
    return saga_sweep_timeouts()
