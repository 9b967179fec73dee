"""Managers see their own mailbox limit (nurture.admin.MailboxLimitAdmin shows a manager only
their own row; supervisors set the caps)."""

from django.db import migrations

from crm.group_permissions import grant_manager_permissions, revoke_manager_permissions

MANAGER_PERMISSIONS = ["view_mailboxlimit"]


def grant(apps, schema_editor):
    grant_manager_permissions(apps, "nurture", MANAGER_PERMISSIONS)


def revoke(apps, schema_editor):
    revoke_manager_permissions(apps, "nurture", MANAGER_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("nurture", "0005_suppression")]

    operations = [migrations.RunPython(grant, revoke)]
