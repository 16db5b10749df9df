"""The overview's index: sagas by when they entered their state, with the state, the reason and the order's time
in the index itself. Built without blocking writes; it replaces the plain index on state_entered_at, which it
leads with, so a saga's change of state updates no more indexes than before."""

from django.db import migrations, models


class AddIndexConcurrently(migrations.AddIndex):
    """`CREATE INDEX CONCURRENTLY` on PostgreSQL (a plain build would block every order until it ends); a plain
    `CREATE INDEX` elsewhere (SQLite, the embedded mode). The migration must set `atomic = False`."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            # A build that failed half way leaves an invalid index behind: drop it and build again.
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}")
            schema_editor.add_index(model, self.index, concurrently=True)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ('saga', '0005_state_without_choices'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='saga',
            index=models.Index(
                fields=['state_entered_at', 'state', 'failure_reason', 'created_at'], name='saga_entered_cover_idx'
            ),
        ),
        migrations.AlterField(
            model_name='saga',
            name='state_entered_at',
            field=models.DateTimeField(),
        ),
    ]
