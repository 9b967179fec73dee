"""Today's "all emails sent, never answered": the finished enrollments of a manager's leads, from
a partial index of the completed ones rather than from every enrollment."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("nurture", "0010_outbound_sent_index")]

    operations = [
        migrations.AddIndex(
            model_name="enrollment",
            index=models.Index(
                condition=models.Q(("state", "completed")),
                fields=["lead", "ended_at", "id"],
                name="enrollment_completed_idx",
            ),
        ),
    ]
