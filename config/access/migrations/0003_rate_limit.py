"""Rate limits in one table of their own (one statement per request); the database cache table the throttles
used before is dropped."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('config', '0002_throttle_cache_table'),
    ]

    operations = [
        migrations.CreateModel(
            name='RateLimit',
            fields=[
                ('key', models.CharField(max_length=200, primary_key=True, serialize=False)),
                ('theoretical_arrival', models.FloatField()),
            ],
        ),
        migrations.RunSQL("DROP TABLE IF EXISTS api_throttle_cache", migrations.RunSQL.noop),
    ]
