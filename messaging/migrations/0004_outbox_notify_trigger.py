"""PostgreSQL wakes the relays itself when outbox rows are inserted: one trigger instead of a NOTIFY statement
(a round trip) after every publish. PostgreSQL sends it at commit and folds repeats within a transaction."""

from django.db import migrations

from config.kernel.postgresql.operations import on_postgresql  # the later migrations take it from here too

CREATE = """
CREATE OR REPLACE FUNCTION sagaflow_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagaflow_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER messaging_outbox_notify AFTER INSERT ON messaging_outboxmessage
    FOR EACH STATEMENT EXECUTE FUNCTION sagaflow_outbox_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS messaging_outbox_notify ON messaging_outboxmessage;
DROP FUNCTION IF EXISTS sagaflow_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("messaging", "0003_worker_heartbeat")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
