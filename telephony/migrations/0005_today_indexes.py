"""Today's missed calls to return, newest first, from a partial index of the missed inbound ones
(a tenth of the calls) rather than from every call of the week."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("telephony", "0004_rejected_payload_counted")]

    operations = [
        migrations.AddIndex(
            model_name="call",
            index=models.Index(
                condition=models.Q(("direction", "in"), ("state", "missed")),
                fields=["-started_at"],
                name="call_missed_idx",
            ),
        ),
    ]
