"""Dead letters that an earlier version stored as "(none)" (every message without an id, merged into one row)
get an id of their own, as letters without an id now do, so that they can be replayed under it."""

import uuid

from django.db import migrations

ORIGINAL = "x-sagaflow-original"  # messaging.deadletters.ORIGINAL, frozen here


def give_each_an_id(apps, schema_editor):
    DeadLetter = apps.get_model("messaging", "DeadLetter")
    for letter in DeadLetter.objects.filter(message_id="(none)").iterator():
        headers = letter.headers if isinstance(letter.headers, dict) else {"headers": letter.headers}
        original = headers.get(ORIGINAL) if isinstance(headers.get(ORIGINAL), dict) else {}
        letter.message_id = str(uuid.uuid4())
        letter.headers = {**headers, ORIGINAL: {**original, "message_id": None}}
        letter.save(update_fields=["message_id", "headers"])


class Migration(migrations.Migration):
    dependencies = [("messaging", "0005_outbox_notify_names_the_row")]

    operations = [migrations.RunPython(give_each_an_id, migrations.RunPython.noop, elidable=True)]
