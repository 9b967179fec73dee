"""Each outbound message keeps its lead's manager, for the manager's outbox (filled here for the
messages there are)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_lead_managers(apps, schema_editor):
    Enrollment = apps.get_model("nurture", "Enrollment")
    OutboundMessage = apps.get_model("nurture", "OutboundMessage")
    of_its_lead = Enrollment.objects.filter(pk=OuterRef("enrollment_id")).values(
        "lead__responsible_id"
    )[:1]
    OutboundMessage.objects.update(lead_manager_id=Subquery(of_its_lead))


class Migration(migrations.Migration):
    dependencies = [
        ("nurture", "0011_today_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    # The rows are filled last: PostgreSQL does not alter a table with foreign key checks of
    # this transaction still pending.
    operations = [
        migrations.AddField(
            model_name="outboundmessage",
            name="lead_manager",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="lead's manager",
            ),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                fields=["lead_manager", "-created_at", "-number"], name="outbound_lead_manager_idx"
            ),
        ),
        migrations.RunPython(copy_lead_managers, migrations.RunPython.noop),
    ]
