"""Health checks for django-health-check: can the system take orders, and are messages flowing through it?

Each check raises ServiceUnavailable with a short, safe message when it fails. The thresholds come from the
settings (HEALTH_*). Checks that read the database close their connection when done: they run in the view's
executor threads, which no request cycle cleans up.
"""

from __future__ import annotations

import dataclasses
import datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from messaging.heartbeat import live_loops, required_loops, stuck_loops
from messaging.models import DeadLetter, OutboxMessage

# What /health runs beside django-health-check's database check, by dotted path: messaging's own checks, then
# those the apps above it add from their AppConfig.ready() (`register_check`), as the saga adds its stuck sagas.
CHECKS: list[str] = [
    "messaging.health.Broker",
    "messaging.health.OutboxLag",
    "messaging.health.DeadLetters",
    "messaging.health.Worker",
]


def register_check(path: str) -> None:
    """Add the check at dotted `path` (a django-health-check HealthCheck) to /health; once, however often asked."""
    if path not in CHECKS:
        CHECKS.append(path)


@dataclasses.dataclass
class Broker(HealthCheck):
    """The broker answers (or, in the embedded default, the in-process transport is in use)."""

    name = "broker"
    timeout = datetime.timedelta(seconds=3)

    def run(self) -> None:
        if settings.MESSAGING_TRANSPORT == "inprocess":
            return
        from messaging.broker import connected

        try:
            # One attempt, its handshake and its close bounded: within the check's own timeout.
            with connected(timeout=1.5):
                pass
        except Exception as error:  # noqa: BLE001
            raise ServiceUnavailable(f"broker unreachable: {type(error).__name__}") from error


@dataclasses.dataclass
class DatabaseCheck(HealthCheck):
    """A check that reads the database. A database that does not answer fails the `database` check; here it
    makes this check fail too, saying it could not look."""

    def run(self) -> None:
        try:
            self.probe()
        except DatabaseError as error:
            raise ServiceUnavailable(f"could not read the database: {type(error).__name__}") from error
        finally:
            connection.close()

    def probe(self) -> None:
        raise NotImplementedError


@dataclasses.dataclass
class OutboxLag(DatabaseCheck):
    """The oldest unpublished outbox row is younger than HEALTH_OUTBOX_LAG_MAX_S: the relay keeps up."""

    name = "outbox_lag"

    def probe(self) -> None:
        oldest = (
            OutboxMessage.objects.filter(published_at__isnull=True)
            .order_by("created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if oldest is None:
            return
        lag = (timezone.now() - oldest).total_seconds()
        if lag > settings.HEALTH_OUTBOX_LAG_MAX_S:
            pending = OutboxMessage.objects.filter(published_at__isnull=True).count()
            raise ServiceUnavailable(
                f"the oldest of {pending} unpublished outbox messages is {lag:.0f}s old "
                f"(limit {settings.HEALTH_OUTBOX_LAG_MAX_S:g}s)"
            )


@dataclasses.dataclass
class DeadLetters(DatabaseCheck):
    """No more than HEALTH_DEAD_LETTERS_MAX_NEW new dead letters in the last HEALTH_DEAD_LETTERS_WINDOW_S that
    nobody has replayed or discarded yet."""

    name = "dead_letters"

    def probe(self) -> None:
        window = settings.HEALTH_DEAD_LETTERS_WINDOW_S
        since = timezone.now() - datetime.timedelta(seconds=window)
        new = DeadLetter.objects.filter(
            first_failed_at__gte=since, replayed_at__isnull=True, discarded_at__isnull=True
        ).count()
        if new > settings.HEALTH_DEAD_LETTERS_MAX_NEW:
            raise ServiceUnavailable(
                f"{new} new dead letters in the last {window:g}s (limit {settings.HEALTH_DEAD_LETTERS_MAX_NEW})"
            )


@dataclasses.dataclass
class Worker(DatabaseCheck):
    """Every consumer, the dead-letter store and the relay have beaten in the last HEALTH_WORKER_MAX_SILENCE_S, in
    some worker (in the embedded mode, the in-process dispatcher has), and no worker that beats for some of its
    loops has others silent that long: those threads are wedged, and what they hold does not move."""

    name = "worker"

    def probe(self) -> None:
        silence = settings.HEALTH_WORKER_MAX_SILENCE_S
        problems = []
        missing = sorted(required_loops() - live_loops(within_s=silence))
        if missing:
            problems.append(f"no heartbeat in the last {silence:g}s from: {', '.join(missing)}")
        stuck = stuck_loops(within_s=silence)
        if stuck:
            problems.append(
                f"silent for {silence:g}s in a live worker: "
                + "; ".join(f"{', '.join(loops)} in {worker}" for worker, loops in sorted(stuck.items()))
            )
        if problems:
            raise ServiceUnavailable("; ".join(problems))
