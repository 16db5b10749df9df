"""The local hand-off (messaging/handoff.py): a row that the worker which wrote it may hand to its own consumers
carries its lease, and says afterwards whether it went that way. The trigger announces only the rows with no
lease: a leased row is not the relay's until its lease ends, and then the relay's sweep finds it."""

from importlib import import_module

from django.db import migrations, models

previous = import_module("messaging.migrations.0004_outbox_notify_trigger")
named = import_module("messaging.migrations.0005_outbox_notify_names_the_row")

CREATE = """
DROP TRIGGER IF EXISTS messaging_outbox_notify ON messaging_outboxmessage;
CREATE TRIGGER messaging_outbox_notify AFTER INSERT ON messaging_outboxmessage
    FOR EACH ROW WHEN (NEW.handoff_until IS NULL) EXECUTE FUNCTION sagaflow_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("messaging", "0008_dead_letter_groups_and_replay_jobs")]

    operations = [
        migrations.AddField(
            model_name="outboxmessage",
            name="handed_off",
            field=models.BooleanField(default=False, db_default=False),
        ),
        migrations.AddField(
            model_name="outboxmessage",
            name="handoff_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(previous.on_postgresql(CREATE), previous.on_postgresql(named.CREATE)),
    ]
