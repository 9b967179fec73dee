"""Each outbound message keeps its enrollment's sequence (filled here for the existing ones)."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_sequences(apps, schema_editor):
    Enrollment = apps.get_model("nurture", "Enrollment")
    OutboundMessage = apps.get_model("nurture", "OutboundMessage")
    of_its_enrollment = Enrollment.objects.filter(pk=OuterRef("enrollment_id")).values(
        "sequence_id"
    )[:1]
    OutboundMessage.objects.filter(sequence=None).update(sequence_id=Subquery(of_its_enrollment))


class Migration(migrations.Migration):
    dependencies = [("nurture", "0008_outbound_newest_index")]

    operations = [
        migrations.AddField(
            model_name="outboundmessage",
            name="sequence",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="nurture.sequence",
                verbose_name="sequence",
            ),
        ),
        migrations.RunPython(copy_sequences, migrations.RunPython.noop),
    ]
