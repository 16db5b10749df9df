"""The periodic tasks are declared once, by the apps (messaging/periodic.py): beat's schedule and the embedded
dispatcher's runs are both made from those declarations."""

from __future__ import annotations

import pytest

from messaging import inprocess, periodic
from messaging.periodic import PeriodicTask

RUNS: list[str] = []


def did_something() -> int:
    RUNS.append("did_something")
    return 2


def did_nothing() -> int:
    RUNS.append("did_nothing")
    return 0


@pytest.fixture(autouse=True)
def _forget_runs():
    RUNS.clear()
    inprocess._wakeup.clear()
    yield
    inprocess._wakeup.clear()


def test_beat_runs_what_the_apps_declare_at_the_intervals_of_the_settings(settings):
    settings.SAGA_SWEEP_INTERVAL_S = 7.0
    settings.OUTBOX_SWEEP_INTERVAL_S = 1.5
    settings.REPLAY_JOB_STALL_S = 30.0

    assert periodic.beat_schedule() == {
        "outbox-safety-sweep": {"task": "messaging.tasks.sweep_outbox", "schedule": 7.5},
        "replay-job-revival": {"task": "messaging.tasks.revive_replay_jobs", "schedule": 15.0},
        "inbox-retention": {"task": "messaging.tasks.prune_inbox", "schedule": 3600.0},
        "outbox-retention": {"task": "messaging.tasks.prune_outbox", "schedule": 3600.0},
        "saga-timeout-sweep": {"task": "saga.tasks.sweep_timeouts", "schedule": 7.0},
        "webhook-attempt-retention": {"task": "orders.tasks.prune_webhook_attempts", "schedule": 3600.0},
    }


def test_the_embedded_dispatcher_runs_the_same_tasks_but_the_outbox_sweep_it_has_no_use_for():
    inprocess_tasks = {task.task for task in periodic.declared() if task.inprocess}

    assert inprocess_tasks == {
        "messaging.tasks.revive_replay_jobs",
        "messaging.tasks.prune_inbox",
        "messaging.tasks.prune_outbox",
        "saga.tasks.sweep_timeouts",
        "orders.tasks.prune_webhook_attempts",
    }


def test_the_dispatcher_runs_each_task_when_due_and_comes_back_at_once_after_one_that_did_something(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(inprocess.time, "monotonic", lambda: clock[0])
    busy = PeriodicTask("busy", f"{__name__}.did_something", 5.0)
    idle = PeriodicTask("idle", f"{__name__}.did_nothing", 60.0)
    next_run = {"busy": 0.0, "idle": 0.0}

    inprocess._run_due([busy, idle], next_run)
    assert RUNS == ["did_something", "did_nothing"] and inprocess._wakeup.is_set()
    assert next_run == {"busy": 105.0, "idle": 160.0}

    RUNS.clear()
    inprocess._wakeup.clear()
    clock[0] = 106.0
    inprocess._run_due([busy, idle], next_run)
    assert RUNS == ["did_something"]

    RUNS.clear()
    inprocess._wakeup.clear()
    idle_only = {"idle": 0.0}
    inprocess._run_due([idle], idle_only)
    assert RUNS == ["did_nothing"] and not inprocess._wakeup.is_set()
