"""PostgreSQL tells the web processes of every change to a token, at commit: a revocation, a change of its role
or customer, its deletion (config/access/recent_tokens.py). A trigger, so that a token changed by SQL of an
operator's own is told of as well as one revoked by the command or the admin."""

from django.db import migrations

from config.kernel.postgresql.operations import on_postgresql

CREATE = """
CREATE OR REPLACE FUNCTION sagaflow_api_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagaflow_api_token', CASE WHEN TG_OP = 'TRUNCATE' THEN '*' ELSE OLD.key_hash END);
    RETURN NULL;
END $$;
CREATE TRIGGER config_apitoken_changed AFTER UPDATE OF key_hash, role, customer_id, revoked_at OR DELETE
    ON config_apitoken FOR EACH ROW EXECUTE FUNCTION sagaflow_api_token_changed();
CREATE TRIGGER config_apitoken_truncated AFTER TRUNCATE
    ON config_apitoken FOR EACH STATEMENT EXECUTE FUNCTION sagaflow_api_token_changed();
"""

DROP = """
DROP TRIGGER IF EXISTS config_apitoken_changed ON config_apitoken;
DROP TRIGGER IF EXISTS config_apitoken_truncated ON config_apitoken;
DROP FUNCTION IF EXISTS sagaflow_api_token_changed();
"""


class Migration(migrations.Migration):
    dependencies = [("config", "0003_rate_limit")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
