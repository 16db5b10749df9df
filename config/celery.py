"""The Celery app: the worker runs the message consumers and the relay as threads; beat runs the periodic tasks
the apps declare."""

from __future__ import annotations

import os

from celery import Celery, bootsteps, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("sagaflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # the `tasks` module of every installed app


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


@app.on_after_configure.connect
def _schedule_periodic_tasks(sender, **kwargs):
    """Beat's schedule: the periodic tasks the apps declare (messaging/periodic.py). Celery reads it before
    Django is set up (`celery -A config beat`), and the declarations are the AppConfigs'."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from messaging.periodic import beat_schedule

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
