from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from messaging.bus import Handler


class SagaConfig(AppConfig):
    name = "saga"
    default_auto_field = "django.db.models.BigAutoField"
    # The saga's consumer (its queue's name): it hears the participants' replies.
    consumer = "saga"

    def ready(self) -> None:
        from messaging import health, metrics
        from saga.metrics import saga_families

        # /health and /metrics say how the sagas do, beside what messaging says of the messages.
        health.register_check("saga.health.StuckSagas")
        metrics.register_database_families(saga_families)

    def periodic_tasks(self) -> list:
        """The sweep, run by beat and by the embedded mode's dispatcher (messaging/periodic.py)."""
        from messaging.periodic import PeriodicTask

        return [PeriodicTask("saga-timeout-sweep", "saga.tasks.sweep_timeouts", "SAGA_SWEEP_INTERVAL_S")]

    def handlers(self) -> Mapping[str, Handler]:
        """The replies of the saga definition in use (saga.registry.definition())."""
        from saga import registry
        from saga.handlers import handlers

        return handlers(registry.definition())
