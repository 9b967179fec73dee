"""Managers see their own mailbox limit (nurture.admin.MailboxLimitAdmin shows a manager only
their own row; supervisors set the caps)."""

from django.db import migrations

from crm.group_permissions import create_all_permissions

MANAGER_PERMISSIONS = ["view_mailboxlimit"]


def grant(apps, schema_editor):
    create_all_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(
        content_type__app_label="nurture", codename__in=MANAGER_PERMISSIONS
    )
    for managers in Group.objects.filter(name="Managers"):
        managers.permissions.add(*permissions)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(
        content_type__app_label="nurture", codename__in=MANAGER_PERMISSIONS
    )
    for managers in Group.objects.filter(name="Managers"):
        managers.permissions.remove(*permissions)


class Migration(migrations.Migration):
    dependencies = [("nurture", "0005_suppression")]

    operations = [migrations.RunPython(grant, revoke)]
