"""Migration operations that keep a running deployment writing while they change a large table."""

from __future__ import annotations

from django.db import migrations


class IndexFieldConcurrently(migrations.AlterField):
    """`AlterField` to a field that differs only by `db_index=True`. On PostgreSQL the index is built with
    `CREATE INDEX CONCURRENTLY`: a plain `CREATE INDEX` on a table of millions of rows would block every insert
    into it, every order, until the build ends. Its migration must set `atomic = False`.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        column = model._meta.get_field(self.name).column
        table = model._meta.db_table
        name = schema_editor._create_index_name(table, [column], suffix="")  # the name Django gives db_index
        quote = schema_editor.quote_name
        # A build that failed half way leaves an invalid index behind, which IF NOT EXISTS would keep.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [quote(name)])
            invalid = cursor.fetchone()
        if invalid and invalid[0]:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY {quote(name)}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(name)} ON {quote(table)} ({quote(column)})"
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        # AlterField's own backwards calls database_forwards, which here only ever builds the index.
        super().database_forwards(app_label, schema_editor, from_state, to_state)


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
