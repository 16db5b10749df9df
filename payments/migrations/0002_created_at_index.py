"""An index on created_at, the admin's newest-first list: built without blocking writes."""

from django.db import migrations, models

from config.kernel.migration_operations import IndexFieldConcurrently


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ('payments', '0001_initial'),
    ]

    operations = [
        IndexFieldConcurrently(
            model_name='payment',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, db_index=True),
        ),
    ]
