"""Saga.state keeps no choices: its states are those of the saga definition in use (saga.registry), and a
step added to the definition needs no migration. No SQL: choices are not in the database."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('saga', '0004_compensation_attempts'),
    ]

    operations = [
        migrations.AlterField(
            model_name='saga',
            name='state',
            field=models.CharField(db_index=True, max_length=32),
        ),
    ]
