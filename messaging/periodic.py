"""The periodic tasks, declared once for Celery beat and for the embedded mode's in-process dispatcher.

Each installed app declares its own in its AppConfig's `periodic_tasks()`, a list of PeriodicTask: a name, the
Celery task to run, and how often (a setting in seconds, or a number of seconds). Beat's schedule is made from
them (config/celery.py), and the in-process dispatcher runs the same tasks, at the same intervals, in its own
thread (messaging/inprocess.py); a task that only the broker's topology needs says `inprocess=False`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.utils.module_loading import import_string

# How often the retention prunes run: the inbox, the published outbox, the webhook attempts.
PRUNE_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class PeriodicTask:
    name: str  # the entry's name in beat's schedule
    task: str  # the Celery task's name, also its dotted path: `saga.tasks.sweep_timeouts`
    every: str | float  # the name of a setting holding seconds, or seconds
    times: float = 1.0  # a multiple of `every`
    inprocess: bool = True  # run by the embedded mode's dispatcher too

    def interval_s(self) -> float:
        seconds = getattr(settings, self.every) if isinstance(self.every, str) else self.every
        return seconds * self.times

    def run(self) -> object:
        """Run the task here, in this thread, as a worker would."""
        return import_string(self.task)()


def declared() -> list[PeriodicTask]:
    """Every installed app's periodic tasks, in the order of INSTALLED_APPS."""
    found: list[PeriodicTask] = []
    for app in apps.get_app_configs():
        given = getattr(app, "periodic_tasks", None)
        found += given() if given else []
    return found


def beat_schedule() -> dict[str, dict[str, object]]:
    """Celery beat's schedule: every declared task, by name."""
    return {task.name: {"task": task.task, "schedule": task.interval_s()} for task in declared()}
