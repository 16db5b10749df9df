from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging import catalogue, wire

        # Before any broker connection: a property that is not UTF-8 must not crash a consumer (see wire.py).
        wire.install()
        # The message types the installed apps add, now that they are all loaded.
        catalogue.discover()

    def periodic_tasks(self) -> list:
        """Run by beat and by the embedded mode's dispatcher (messaging/periodic.py)."""
        from messaging.periodic import PRUNE_INTERVAL_S, PeriodicTask

        return [
            # Only where a relay publishes to the broker: in the embedded mode the dispatcher reads the outbox.
            PeriodicTask(
                "outbox-safety-sweep",
                "messaging.tasks.sweep_outbox",
                "OUTBOX_SWEEP_INTERVAL_S",
                times=5,
                inprocess=False,
            ),
            # Twice within the time a job may go without a batch, so that one left by a dead worker goes on soon.
            PeriodicTask("replay-job-revival", "messaging.tasks.revive_replay_jobs", "REPLAY_JOB_STALL_S", times=0.5),
            PeriodicTask("inbox-retention", "messaging.tasks.prune_inbox", PRUNE_INTERVAL_S),
            PeriodicTask("outbox-retention", "messaging.tasks.prune_outbox", PRUNE_INTERVAL_S),
        ]
