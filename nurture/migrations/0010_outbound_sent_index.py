"""The message's sequence is required, and the sent messages are indexed by sequence and step
(apart from 0009: PostgreSQL alters no table with the copy's foreign-key checks pending)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("nurture", "0009_outbound_sequence")]

    operations = [
        migrations.AlterField(
            model_name="outboundmessage",
            name="sequence",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="nurture.sequence",
                verbose_name="sequence",
            ),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                condition=models.Q(("state", "sent")),
                fields=["sequence", "number"],
                name="outbound_sent_idx",
            ),
        ),
    ]
