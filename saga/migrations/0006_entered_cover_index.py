"""The overview's index: sagas by when they entered their state, with the state, the reason and the order's time
in the index itself. Built without blocking writes; it replaces the plain index on state_entered_at, which it
leads with, so a saga's change of state updates no more indexes than before."""

from django.db import migrations, models

from config.kernel.migration_operations import AddIndexConcurrently


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
