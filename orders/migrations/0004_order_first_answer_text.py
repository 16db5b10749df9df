from django.db import migrations, models


class Migration(migrations.Migration):
    """A nullable column without a default: on PostgreSQL a change of the catalogue only, whatever the size of
    the table, so orders go on being placed while it runs. The jsonb `first_answer` stays for the orders of the
    versions before (and for them while a deployment rolls)."""

    dependencies = [
        ('orders', '0003_idempotency_key_per_customer'),
    ]

    operations = [
        migrations.AddField(
            model_name='order',
            name='first_answer_text',
            field=models.TextField(blank=True, editable=False, null=True),
        ),
    ]
