"""Each call keeps its lead's manager, for the manager's calls list (filled here for the calls
there are)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_lead_managers(apps, schema_editor):
    Call = apps.get_model("telephony", "Call")
    Lead = apps.get_model("crm", "Lead")
    of_its_lead = Lead.objects.filter(pk=OuterRef("lead_id")).values("responsible_id")[:1]
    Call.objects.filter(lead__isnull=False).update(lead_manager_id=Subquery(of_its_lead))


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0008_tasks_preferences_and_notification_messages"),
        ("telephony", "0005_today_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    # The rows are filled last: PostgreSQL does not alter a table with foreign key checks of
    # this transaction still pending.
    operations = [
        migrations.AddField(
            model_name="call",
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
            model_name="call",
            index=models.Index(
                fields=["lead_manager", "-started_at"], name="call_lead_manager_idx"
            ),
        ),
        migrations.RunPython(copy_lead_managers, migrations.RunPython.noop),
    ]
