"""An index on created_at, the admin's newest-first list: built without blocking writes."""

from django.db import migrations, models

from config.kernel.migration_operations import IndexFieldConcurrently


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ('saga', '0002_saga_failure_detail'),
    ]

    operations = [
        IndexFieldConcurrently(
            model_name='saga',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, db_index=True),
        ),
    ]
