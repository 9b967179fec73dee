"""What the two groups may do with telephony: supervisors everything, managers look at calls,
events, agent states, incoming mail and contacts, and work on calls, agent states and mail."""

from django.db import migrations

from crm.group_permissions import grant_app_permissions, revoke_app_permissions

MANAGER_PERMISSIONS = [
    "view_call",
    "view_callevent",
    "view_agentstate",
    "view_inboundemail",
    "view_inboundcontact",
    "change_call",
    "change_agentstate",
    "change_inboundemail",
]


def grant(apps, schema_editor):
    grant_app_permissions(apps, "telephony", MANAGER_PERMISSIONS)


def revoke(apps, schema_editor):
    revoke_app_permissions(apps, "telephony")


class Migration(migrations.Migration):
    dependencies = [
        ("telephony", "0001_initial"),
        ("crm", "0002_statuses_and_groups"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
