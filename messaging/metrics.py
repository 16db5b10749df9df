"""Prometheus metrics, from two sources, because the web and the worker are separate processes.

- What the database knows is read at scrape time by `DatabaseCollector` and served on the web's `/metrics`:
  the outbox backlog and the age of its oldest message; dead letters; the age of each loop's last heartbeat;
  and what the apps above register (`register_database_families`): the saga's sagas started, completed,
  failed by reason and cancelled, in each state and overdue (saga/metrics.py). Every web process answers
  with the same figures, and a restart loses nothing.
- What only the process that handles messages sees lives in the `HANDLING` registry of that process: handler
  latency per message type, outcomes, retries and dead-letterings. A Celery worker serves it on its own port
  (METRICS_WORKER_PORT; each worker process is one scrape target). In the embedded mode the dispatcher is a
  thread of the web process, so the web's `/metrics` includes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

logger = logging.getLogger(__name__)

HANDLING = CollectorRegistry(auto_describe=True)

HANDLER_SECONDS = Histogram(
    "sagaflow_handler_duration_seconds",
    "Time to apply one message that was processed: handler, inbox row and, when handled alone, the commit.",
    ["consumer", "message_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=HANDLING,
)
MESSAGES = Counter(
    "sagaflow_messages_handled",
    "Messages given to a handler, by outcome: processed, duplicate (skipped by the inbox) or failed.",
    ["consumer", "message_type", "outcome"],
    registry=HANDLING,
)
RETRIES = Counter(
    "sagaflow_message_retries",
    "Deliveries that failed transiently and were sent back for a later attempt.",
    ["consumer", "message_type"],
    registry=HANDLING,
)
BATCH_SIZE = Histogram(
    "sagaflow_consumer_batch_size",
    "Deliveries a consumer thread handled in one transaction.",
    ["consumer"],
    buckets=(1, 2, 3, 5, 8, 13, 21, 34),
    registry=HANDLING,
)
BATCHES_SPLIT = Counter(
    "sagaflow_consumer_batches_split",
    "Batches rolled back because one of their messages failed (or their commit did); each message was then "
    "handled alone.",
    ["consumer"],
    registry=HANDLING,
)
HANDED_OFF = Counter(
    "sagaflow_messages_handed_off",
    "Outbox messages this worker handed to its own consumers without the broker (MESSAGING_LOCAL_HANDOFF).",
    ["message_type"],
    registry=HANDLING,
)
HANDOFFS_RELEASED = Counter(
    "sagaflow_handoffs_released",
    "Outbox messages a hand-off gave back to the relay, because one of their handlers failed (or the commit "
    "did): they go through the broker, with its retries and dead letters.",
    ["message_type"],
    registry=HANDLING,
)
DEAD_LETTERED = Counter(
    "sagaflow_messages_dead_lettered",
    "Deliveries this process sent to the dead letters, by consumer and reason.",
    ["consumer", "reason"],
    registry=HANDLING,
)


def handled(consumer: str, message_type: str, outcome: str, seconds: float) -> None:
    MESSAGES.labels(consumer, message_type, outcome).inc()
    if outcome == "processed":
        HANDLER_SECONDS.labels(consumer, message_type).observe(seconds)


# What the apps above messaging read from the database at each scrape, registered from their AppConfig.ready()
# (`register_database_families`): the saga's figures (saga/metrics.py). A database that fails one fails the
# scrape's database figures as a whole.
DATABASE_FAMILIES: list[Callable[[], Iterable[Metric]]] = []


def register_database_families(families: Callable[[], Iterable[Metric]]) -> None:
    """Add `families()`, read at each scrape of the web's /metrics, before messaging's own; once."""
    if families not in DATABASE_FAMILIES:
        DATABASE_FAMILIES.append(families)


class DatabaseCollector:
    """Reads the figures at each scrape, in a handful of aggregate queries. If the database does not answer,
    the scrape still succeeds and says so: sagaflow_database_up 0."""

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._families())
        except DatabaseError as error:
            logger.warning("metrics: could not read the database: %s", error)
            families = []
        up = GaugeMetricFamily("sagaflow_database_up", "1 if the figures read from the database are present.")
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        for families in DATABASE_FAMILIES:
            yield from families()
        yield from _outbox_families()
        yield from _dead_letter_families()
        yield from _heartbeat_families()


def _outbox_families() -> Iterator[Metric]:
    from messaging.models import OutboxMessage

    backlog = OutboxMessage.objects.filter(published_at__isnull=True).aggregate(n=Count("pk"), oldest=Min("created_at"))
    pending = GaugeMetricFamily("sagaflow_outbox_pending", "Outbox messages not yet published.")
    pending.add_metric([], backlog["n"])
    age = GaugeMetricFamily(
        "sagaflow_outbox_oldest_pending_age_seconds",
        "Age of the oldest unpublished outbox message; 0 when there is none.",
    )
    age.add_metric([], (timezone.now() - backlog["oldest"]).total_seconds() if backlog["oldest"] else 0.0)
    yield from (pending, age)


def _dead_letter_families() -> Iterator[Metric]:
    from messaging.models import DeadLetter

    open_ = Q(replayed_at__isnull=True, discarded_at__isnull=True)
    rows = (
        DeadLetter.objects.values("reason")
        .annotate(
            open=Count("pk", filter=open_),
            replayed=Count("pk", filter=Q(replayed_at__isnull=False)),
            discarded=Count("pk", filter=Q(discarded_at__isnull=False, replayed_at__isnull=True)),
        )
        .order_by("reason")
    )
    family = GaugeMetricFamily(
        "sagaflow_dead_letters",
        "Stored dead letters, by reason and status (open, replayed, discarded).",
        labels=["reason", "status"],
    )
    for row in rows:
        for status in ("open", "replayed", "discarded"):
            family.add_metric([row["reason"], status], row[status])
    yield family


def _heartbeat_families() -> Iterator[Metric]:
    from messaging.models import WorkerHeartbeat

    now = timezone.now()
    recent = now - timedelta(days=1)
    rows = (
        WorkerHeartbeat.objects.filter(beat_at__gte=recent)
        .values("loop")
        .annotate(last=Max("beat_at"))
        .order_by("loop")
    )
    family = GaugeMetricFamily(
        "sagaflow_heartbeat_age_seconds",
        "Seconds since the freshest heartbeat of each delivery loop, in any worker.",
        labels=["loop"],
    )
    for row in rows:
        family.add_metric([row["loop"]], (now - row["last"]).total_seconds())
    yield family


class _Registries:
    """Several registries exposed as one (no metric name is in two of them)."""

    def __init__(self, registries: Iterable[CollectorRegistry | DatabaseCollector]):
        self.registries = list(registries)

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()


def web_exposition(accept: str | None) -> tuple[bytes, str]:
    """The body and content type of the web's /metrics: this process's runtime, the database's figures, and
    in the embedded mode the handling metrics of the in-process dispatcher."""
    sources: list = [REGISTRY, DatabaseCollector()]
    if settings.MESSAGING_TRANSPORT == "inprocess":
        sources.append(HANDLING)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Registries(sources)), content_type


def worker_registry() -> CollectorRegistry:
    """What a worker serves on METRICS_WORKER_PORT: its runtime and its handling metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Registries([REGISTRY, HANDLING]))
    return registry


def serve_worker_metrics():
    """Start the worker's metrics server when METRICS_WORKER_PORT is set; returns it (to shut it down) or None.

    A port already taken is logged, not fatal: the worker's job is the messages.
    """
    port = settings.METRICS_WORKER_PORT
    if not port:
        return None
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=settings.METRICS_WORKER_ADDR, registry=worker_registry())
    except OSError as error:
        logger.error("worker metrics not served: cannot listen on %s:%s: %s", settings.METRICS_WORKER_ADDR, port, error)
        return None
    logger.info("worker metrics on http://%s:%s/metrics", settings.METRICS_WORKER_ADDR, port)
    return server
