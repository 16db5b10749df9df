"""The outbox trigger's notification names the row it announces, so that a relay claims it by its primary key
instead of scanning for unpublished rows (a scan that also walks the index entries of every row published
since the last vacuum)."""

from importlib import import_module

from django.db import migrations

previous = import_module("messaging.migrations.0004_outbox_notify_trigger")

CREATE = """
CREATE OR REPLACE FUNCTION sagaflow_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagaflow_outbox', NEW.id::text);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS messaging_outbox_notify ON messaging_outboxmessage;
CREATE TRIGGER messaging_outbox_notify AFTER INSERT ON messaging_outboxmessage
    FOR EACH ROW EXECUTE FUNCTION sagaflow_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("messaging", "0004_outbox_notify_trigger")]

    operations = [migrations.RunPython(previous.on_postgresql(CREATE),
                                       previous.on_postgresql(previous.DROP + previous.CREATE))]
