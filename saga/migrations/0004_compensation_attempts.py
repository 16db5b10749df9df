"""How many compensations a saga has sent in its state, and when the sweep next looks whether the last took
effect. Both columns are added without a table scan or a rewrite."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('saga', '0003_created_at_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='saga',
            name='compensation_attempts',
            field=models.IntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='saga',
            name='compensation_due_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
