"""Managers edit their own profile (its signature and phone; crm.admin.ProfileAdmin keeps them to
their own and leaves who they are and their extension to supervisors)."""

from django.db import migrations

from crm.group_permissions import create_all_permissions

MANAGER_PERMISSIONS = ["change_profile"]


def grant(apps, schema_editor):
    create_all_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(
        content_type__app_label="crm", codename__in=MANAGER_PERMISSIONS
    )
    for managers in Group.objects.filter(name="Managers"):
        managers.permissions.add(*permissions)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(
        content_type__app_label="crm", codename__in=MANAGER_PERMISSIONS
    )
    for managers in Group.objects.filter(name="Managers"):
        managers.permissions.remove(*permissions)


class Migration(migrations.Migration):
    dependencies = [("crm", "0004_fewer_redundant_indexes")]

    operations = [migrations.RunPython(grant, revoke)]
