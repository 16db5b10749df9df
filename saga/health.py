"""The saga's health check, registered from SagaConfig.ready() beside messaging's (messaging/health.py)."""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from health_check.exceptions import ServiceUnavailable

from messaging.health import DatabaseCheck
from saga.services import flagged_sagas, overdue_sagas, sweep_grace


@dataclasses.dataclass
class StuckSagas(DatabaseCheck):
    """No more than HEALTH_STUCK_SAGAS_MAX sagas are stuck: in any state past its deadline by more than one
    sweep interval (the time the sweep has to act on them), or flagged after SAGA_COMPENSATION_MAX_ATTEMPTS
    compensations without effect. The message counts them by state; it names no order (/health is public)."""

    name = "stuck_sagas"

    def probe(self) -> None:
        flagged = _by_state(flagged_sagas())
        overdue = _by_state(
            overdue_sagas(now=timezone.now() - sweep_grace()).exclude(pk__in=flagged_sagas().values("pk"))
        )
        if sum(flagged.values()) + sum(overdue.values()) <= settings.HEALTH_STUCK_SAGAS_MAX:
            return
        parts = []
        if overdue:
            parts.append(
                f"{sum(overdue.values())} sagas past their deadline ({_states(overdue)}); is the sweep (beat) running?"
            )
        if flagged:
            parts.append(
                f"{sum(flagged.values())} sagas flagged after {settings.SAGA_COMPENSATION_MAX_ATTEMPTS} "
                f"compensation attempts without effect ({_states(flagged)}); see Admin → Sagas"
            )
        raise ServiceUnavailable(f"{'; '.join(parts)} (limit {settings.HEALTH_STUCK_SAGAS_MAX})")


def _by_state(sagas) -> dict[str, int]:
    return dict(sagas.values_list("state").annotate(n=Count("pk")).order_by("state"))


def _states(by_state: dict[str, int]) -> str:
    """`COMPENSATING 2, PAYMENT_PENDING 1`."""
    return ", ".join(f"{state} {n}" for state, n in by_state.items())
