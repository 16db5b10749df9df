"""The Celery app: the worker runs the message consumers and the relay as threads; beat runs the sweeps."""

from __future__ import annotations

import os

from celery import Celery, bootsteps, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("sagaflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["messaging", "saga"])


class MessagingStep(bootsteps.StartStopStep):
    """Runs the consumers and the relay inside `celery -A config worker`."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.runtime = None

    def start(self, worker):
        from messaging.worker import MessagingRuntime

        self.runtime = MessagingRuntime()
        self.runtime.start()

    def stop(self, worker):
        if self.runtime is not None:
            self.runtime.shutdown()


app.steps["worker"].add(MessagingStep)


# How often beat, or the embedded mode's in-process thread, prunes the inbox and the published outbox. Here, not
# in messaging.retention: this module is read before Django's apps are ready, and that one imports models.
PRUNE_INTERVAL_S = 3600.0


def beat_schedule() -> dict:
    from django.conf import settings

    return {
        "saga-timeout-sweep": {"task": "saga.tasks.sweep_timeouts", "schedule": settings.SAGA_SWEEP_INTERVAL_S},
        "outbox-safety-sweep": {
            "task": "messaging.tasks.sweep_outbox",
            "schedule": settings.OUTBOX_SWEEP_INTERVAL_S * 5,
        },
        "inbox-retention": {"task": "messaging.tasks.prune_inbox", "schedule": PRUNE_INTERVAL_S},
        "outbox-retention": {"task": "messaging.tasks.prune_outbox", "schedule": PRUNE_INTERVAL_S},
    }


@app.on_after_configure.connect
def _schedule_sweeps(sender, **kwargs):
    sender.conf.beat_schedule = beat_schedule()


@signals.worker_init.connect
def _trace_worker(**kwargs):
    from config import tracing

    tracing.setup("worker")


@signals.beat_init.connect
def _trace_beat(**kwargs):
    from config import tracing

    tracing.setup("beat")


@signals.setup_logging.connect
def _use_django_logging(**kwargs):
    """Keep Django's LOGGING (JSON, LOG_LEVEL, context fields) in worker and beat instead of Celery's own."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
