"""Managers edit their own profile (its signature and phone; crm.admin.ProfileAdmin keeps them to
their own and leaves who they are and their extension to supervisors)."""

from django.db import migrations

from crm.group_permissions import grant_manager_permissions, revoke_manager_permissions

MANAGER_PERMISSIONS = ["change_profile"]


def grant(apps, schema_editor):
    grant_manager_permissions(apps, "crm", MANAGER_PERMISSIONS)


def revoke(apps, schema_editor):
    revoke_manager_permissions(apps, "crm", MANAGER_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("crm", "0004_fewer_redundant_indexes")]

    operations = [migrations.RunPython(grant, revoke)]
