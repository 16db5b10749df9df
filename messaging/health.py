"""Health checks of the messaging side, for django-health-check."""

from __future__ import annotations

import dataclasses
import datetime

from django.conf import settings
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable


@dataclasses.dataclass
class Broker(HealthCheck):
    """The broker answers (or, in the embedded default, the in-process transport is in use)."""

    timeout = datetime.timedelta(seconds=3)

    def run(self) -> None:
        if settings.MESSAGING_TRANSPORT == "inprocess":
            return
        from kombu import Connection

        try:
            with Connection(settings.BROKER_URL, connect_timeout=2) as broker:
                broker.ensure_connection(max_retries=1)
        except Exception as error:  # noqa: BLE001
            raise ServiceUnavailable(f"broker unreachable: {type(error).__name__}") from error
