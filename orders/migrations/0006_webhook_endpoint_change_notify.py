"""PostgreSQL tells the processes that end orders of every change to the webhook endpoints, at commit
(orders/webhooks.py keeps the active ones while it hears). A trigger, so that an endpoint changed by SQL of an
operator's own is told of as well as one changed through the admin."""

from django.db import migrations

from config.kernel.postgresql.operations import on_postgresql

CREATE = """
CREATE OR REPLACE FUNCTION sagaflow_webhook_endpoint_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagaflow_webhook_endpoint', '*');
    RETURN NULL;
END $$;
CREATE TRIGGER orders_webhookendpoint_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON orders_webhookendpoint FOR EACH STATEMENT EXECUTE FUNCTION sagaflow_webhook_endpoint_changed();
"""

DROP = """
DROP TRIGGER IF EXISTS orders_webhookendpoint_changed ON orders_webhookendpoint;
DROP FUNCTION IF EXISTS sagaflow_webhook_endpoint_changed();
"""


class Migration(migrations.Migration):
    dependencies = [("orders", "0005_webhook_endpoints_and_attempts")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
