"""The W3C trace context of the span that wrote an outbox row, which the relay sends on as AMQP headers."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("messaging", "0006_dead_letters_without_an_id")]

    operations = [
        migrations.AddField(
            model_name="outboxmessage",
            name="traceparent",
            field=models.CharField(blank=True, max_length=55, null=True),
        ),
        migrations.AddField(
            model_name="outboxmessage",
            name="tracestate",
            field=models.CharField(blank=True, max_length=512, null=True),
        ),
    ]
