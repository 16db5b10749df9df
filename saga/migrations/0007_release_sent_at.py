"""When a saga first sent a release that no reply answers (design §7: a reservation takes the stock at once,
and the saga itself sends `inventory.release`). A nullable column without a default: adding it rewrites
nothing. Its partial index starts empty and is built without blocking writes."""

from django.db import migrations, models

from config.kernel.migration_operations import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("saga", "0006_entered_cover_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="saga",
            name="release_sent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        AddIndexConcurrently(
            model_name="saga",
            index=models.Index(
                condition=models.Q(("release_sent_at__isnull", False)),
                fields=["release_sent_at"],
                name="saga_release_sent_idx",
            ),
        ),
    ]
