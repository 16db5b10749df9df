"""The readable text of a saga's failure, kept from the message that failed it."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('saga', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='saga',
            name='failure_detail',
            field=models.CharField(blank=True, default='', max_length=255),
        ),
    ]
