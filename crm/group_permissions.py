"""For data migrations: give the Managers and Supervisors groups an app's permissions."""

from django.contrib.auth.management import create_permissions


def create_all_permissions(apps) -> None:
    """Permissions are normally created after all migrations; a migration granting them needs
    them now."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def grant_app_permissions(apps, app_label: str, manager_codenames) -> None:
    """Supervisors get every permission of `app_label`; Managers the ones named."""
    create_all_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(content_type__app_label=app_label)
    Group.objects.get(name="Supervisors").permissions.add(*permissions)
    Group.objects.get(name="Managers").permissions.add(
        *permissions.filter(codename__in=manager_codenames)
    )


def revoke_app_permissions(apps, app_label: str) -> None:
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(content_type__app_label=app_label)
    for group in Group.objects.filter(name__in=["Managers", "Supervisors"]):
        group.permissions.remove(*permissions)


def _manager_permissions(apps, app_label: str, codenames):
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)


def grant_manager_permissions(apps, app_label: str, codenames) -> None:
    """Managers get these permissions of `app_label` too (Supervisors have all of them)."""
    create_all_permissions(apps)
    permissions = _manager_permissions(apps, app_label, codenames)
    for managers in apps.get_model("auth", "Group").objects.filter(name="Managers"):
        managers.permissions.add(*permissions)


def revoke_manager_permissions(apps, app_label: str, codenames) -> None:
    permissions = _manager_permissions(apps, app_label, codenames)
    for managers in apps.get_model("auth", "Group").objects.filter(name="Managers"):
        managers.permissions.remove(*permissions)
